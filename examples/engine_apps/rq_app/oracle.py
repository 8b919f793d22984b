"""What each task should return, for the harness's correct_values check."""


def add(x, y, delay_s=0.0):
    return x + y

"""What is wrong with a client's drawing: the InputError family, raised anywhere in reading a drawing
(decoding, the ink, a digit, a number) and answered as a 4xx with its message (handler/answers.py
error_answer), never as a server error."""


class InputError(ValueError):
    """Bad client input: becomes a 4xx answer with this message, never a server error."""

    status = 400


class UnsupportedMediaError(InputError):
    status = 415


class TooLargeError(InputError):
    status = 413


class NoDigitError(InputError):
    """Nothing (or only a speck) was drawn: answered as 'no digit drawn', never guessed."""

    status = 422
    reason = "no_digit"


class TwoLinesError(InputError):
    """A number is read on one line: writing on two (or more) is refused, not guessed at."""

    status = 422
    reason = "two_lines"


class TooManyDigitsError(InputError):
    status = 422
    reason = "too_many_digits"


class DrawingFault(InputError):
    """Our own failure on one drawing (a bug its bytes found): that drawing's 500, logged, while the other
    drawings of its batch are answered as ever (handler/mnist_handler.py). Not the client's fault, so not
    a 4xx; but one drawing, not the batch (an exception out of the handler fails every part 503)."""

    status = 500

import pytest

from projects.secret_masking import MASK, SecretMasker, mask_secrets

SECRET = "hunter2-token"


def feed_all(pieces: list[str], secrets: list[str]) -> str:
    masker = SecretMasker(secrets)
    return "".join(masker.feed(piece) for piece in pieces) + masker.finish()


def test_a_secret_in_one_piece_is_masked() -> None:
    assert mask_secrets(f"token={SECRET}\n", [SECRET]) == f"token={MASK}\n"


@pytest.mark.parametrize("cut", range(1, len(SECRET)))
def test_a_secret_cut_in_two_anywhere_is_still_masked(cut: int) -> None:
    text = f"before {SECRET} after\n"
    start = text.index(SECRET)
    pieces = [text[: start + cut], text[start + cut :]]
    assert feed_all(pieces, [SECRET]) == f"before {MASK} after\n"


def test_a_secret_fed_one_character_at_a_time_is_masked() -> None:
    assert feed_all(list(f"a{SECRET}b{SECRET}"), [SECRET]) == f"a{MASK}b{MASK}"


def test_text_that_cannot_begin_a_secret_is_released_at_once() -> None:
    masker = SecretMasker([SECRET])
    released = masker.feed("x" * 100)
    assert released == "x" * (100 - (len(SECRET) - 1))
    assert masker.finish() == "x" * (len(SECRET) - 1)


def test_the_longer_of_two_overlapping_secrets_is_masked_whole() -> None:
    assert mask_secrets("key=abcdefgh", ["abcd", "abcdefgh"]) == f"key={MASK}"


def test_very_short_values_are_not_treated_as_secrets() -> None:
    assert mask_secrets("a b c", ["a", "b"]) == "a b c"


def test_without_secrets_text_passes_through_unchanged() -> None:
    masker = SecretMasker([])
    assert masker.feed("plain") == "plain"
    assert masker.finish() == ""

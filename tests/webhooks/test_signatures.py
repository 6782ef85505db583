from webhooks.signatures import github_signature, github_signature_valid, gitlab_token_valid

DOCS_SECRET = "It's a Secret to Everybody"
DOCS_PAYLOAD = b"Hello, World!"
DOCS_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_it_matches_the_github_docs_test_vector() -> None:
    assert github_signature(secret=DOCS_SECRET, body=DOCS_PAYLOAD) == DOCS_SIGNATURE
    assert github_signature_valid(secret=DOCS_SECRET, body=DOCS_PAYLOAD, header=DOCS_SIGNATURE)


def test_it_rejects_a_signature_made_with_another_secret() -> None:
    header = github_signature(secret="another secret entirely", body=DOCS_PAYLOAD)
    assert not github_signature_valid(secret=DOCS_SECRET, body=DOCS_PAYLOAD, header=header)


def test_it_rejects_a_body_changed_by_one_byte() -> None:
    assert not github_signature_valid(
        secret=DOCS_SECRET, body=b"Hello, World?", header=DOCS_SIGNATURE
    )


def test_it_rejects_missing_legacy_sha1_and_garbled_headers() -> None:
    for header in (None, "", "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6", DOCS_SIGNATURE[7:]):
        assert not github_signature_valid(secret=DOCS_SECRET, body=DOCS_PAYLOAD, header=header)
    assert not github_signature_valid(
        secret=DOCS_SECRET, body=DOCS_PAYLOAD, header="sha256=ünïcode"
    )


def test_it_rejects_everything_when_the_secret_is_empty() -> None:
    header = github_signature(secret="", body=DOCS_PAYLOAD)
    assert not github_signature_valid(secret="", body=DOCS_PAYLOAD, header=header)


GITLAB_SECRET = "a-gitlab-webhook-token"


def test_a_gitlab_token_equal_to_the_secret_is_valid() -> None:
    assert gitlab_token_valid(secret=GITLAB_SECRET, header=GITLAB_SECRET)


def test_a_gitlab_token_that_differs_from_the_secret_is_rejected() -> None:
    for header in ("another-gitlab-token", GITLAB_SECRET + "x", GITLAB_SECRET[:-1], "ünïcode"):
        assert not gitlab_token_valid(secret=GITLAB_SECRET, header=header)


def test_a_missing_or_empty_gitlab_token_is_rejected() -> None:
    assert not gitlab_token_valid(secret=GITLAB_SECRET, header=None)
    assert not gitlab_token_valid(secret=GITLAB_SECRET, header="")


def test_every_gitlab_token_is_rejected_when_the_secret_is_empty() -> None:
    for secret in ("", "\n", "\r\n"):
        for header in (None, "", "\n"):
            assert not gitlab_token_valid(secret=secret, header=header)


def test_a_secret_with_line_breaks_matches_the_token_gitlab_sends_without_them() -> None:
    # GitLab sends the token with "\n" and "\r\n" removed.
    assert gitlab_token_valid(secret=GITLAB_SECRET + "\n", header=GITLAB_SECRET)
    assert gitlab_token_valid(secret=GITLAB_SECRET + "\r\n", header=GITLAB_SECRET)
    assert gitlab_token_valid(secret="a-gitlab-\nwebhook-token", header=GITLAB_SECRET)
    assert not gitlab_token_valid(secret=GITLAB_SECRET + "\n", header=GITLAB_SECRET + "\n")

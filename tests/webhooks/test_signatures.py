from webhooks.signatures import github_signature, github_signature_valid

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

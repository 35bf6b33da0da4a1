"""JWT user tokens: each rejection, with its reason, against keys made here."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.adapters.jwt_tokens import LEEWAY_S, JwtVerifier, looks_like_jwt
from service.adapters.tokens import UserTokens
from service.domain.errors import Unauthorized

SECRET = "a-shared-secret-of-32-bytes-or-more!"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def claims(**extra) -> dict:
    base = {"sub": "alice", "exp": int(time.time()) + 300}
    return {k: v for k, v in {**base, **extra}.items() if v is not None}


def hs256(**extra) -> str:
    return jwt.encode(claims(**extra), SECRET, algorithm="HS256")


def refused(verifier, token: str, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason) as caught:
        verifier.verify(token)
    assert caught.value.field == "token" and caught.value.code == "unauthorized"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_an_hs256_token_verifies_to_its_sub():
    assert JwtVerifier(secret=SECRET).verify(hs256()) == "alice"


def test_an_expired_token_is_refused():
    refused(JwtVerifier(secret=SECRET), hs256(exp=int(time.time()) - LEEWAY_S - 5),
            "has expired")


def test_a_token_expired_within_the_leeway_is_taken():
    assert JwtVerifier(secret=SECRET).verify(hs256(exp=int(time.time()) - 5)) == "alice"


def test_a_token_signed_with_another_secret_has_a_bad_signature():
    token = jwt.encode(claims(), "another-secret-that-is-32-bytes-long", algorithm="HS256")
    refused(JwtVerifier(secret=SECRET), token, "bad signature")


def test_a_token_not_yet_valid_is_refused_and_one_within_the_leeway_taken():
    verifier = JwtVerifier(secret=SECRET)
    refused(verifier, hs256(nbf=int(time.time()) + LEEWAY_S + 60), "not valid yet")
    assert verifier.verify(hs256(nbf=int(time.time()) + 5)) == "alice"


@pytest.mark.parametrize("claim", ["exp", "sub"])
def test_exp_and_sub_are_required(claim):
    refused(JwtVerifier(secret=SECRET), hs256(**{claim: None}), f"has no {claim} claim")


@pytest.mark.parametrize("sub", ["no spaces", "", "x" * 129, 42])
def test_sub_must_be_a_valid_user_id(sub):
    refused(JwtVerifier(secret=SECRET), hs256(sub=sub), "sub")


def test_audience_is_checked_when_set():
    verifier = JwtVerifier(secret=SECRET, audience="notify")
    assert verifier.verify(hs256(aud="notify")) == "alice"
    assert verifier.verify(hs256(aud=["other", "notify"])) == "alice"
    refused(verifier, hs256(aud="billing"), "another audience")
    refused(verifier, hs256(), "has no aud claim")


def test_audience_is_not_checked_when_unset():
    assert JwtVerifier(secret=SECRET).verify(hs256(aud="anything")) == "alice"


def test_issuer_is_checked_when_set():
    verifier = JwtVerifier(secret=SECRET, issuer="https://id.example.com")
    assert verifier.verify(hs256(iss="https://id.example.com")) == "alice"
    refused(verifier, hs256(iss="https://evil.example.com"), "issuer")
    refused(verifier, hs256(), "has no iss claim")


def test_alg_none_is_refused():
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}."
    refused(JwtVerifier(secret=SECRET), token, "not signed with HS256")


def test_algorithm_confusion_hs256_with_the_public_key_as_secret_is_refused():
    """The attack: the server holds an RSA public key, which is public; a
    token signed HS256 with that key's PEM as the HMAC secret must fail."""
    public_pem = pem(RSA_KEY)
    signing_input = (f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}."
                     f"{b64(json.dumps(claims()).encode())}")
    mac = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    refused(JwtVerifier(public_key=public_pem), f"{signing_input}.{b64(mac)}",
            "not signed with RS256")


def test_rs256_and_es256_verify_with_their_public_key():
    rs = jwt.encode(claims(), RSA_KEY, algorithm="RS256")
    es = jwt.encode(claims(sub="bob"), EC_KEY, algorithm="ES256")
    assert JwtVerifier(public_key=pem(RSA_KEY)).verify(rs) == "alice"
    assert JwtVerifier(public_key=pem(EC_KEY)).verify(es) == "bob"


def test_the_algorithm_is_pinned_by_the_key_type():
    es = jwt.encode(claims(), EC_KEY, algorithm="ES256")
    refused(JwtVerifier(public_key=pem(RSA_KEY)), es, "not signed with RS256")
    rs512 = jwt.encode(claims(), RSA_KEY, algorithm="RS512")
    refused(JwtVerifier(public_key=pem(RSA_KEY)), rs512, "not signed with RS256")


def test_a_token_signed_by_another_rsa_key_has_a_bad_signature():
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(JwtVerifier(public_key=pem(RSA_KEY)),
            jwt.encode(claims(), other, algorithm="RS256"), "bad signature")


def test_a_malformed_jwt_is_refused():
    verifier = JwtVerifier(secret=SECRET)
    refused(verifier, "bm90LWpzb24.e30.sig", "not a well-formed JWT")  # header not JSON
    signing_input = f"{b64(json.dumps({'alg': 'HS256'}).encode())}.{b64(b'not json')}"
    mac = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    refused(verifier, f"{signing_input}.{b64(mac)}", "not a well-formed JWT")  # payload
    refused(verifier, hs256(exp="tomorrow"), "not a well-formed JWT")


def test_the_jwt_shape_is_told_apart_from_itsdangerous_tokens():
    assert looks_like_jwt(hs256())
    assert not looks_like_jwt(UserTokens("s3cret", 60).issue("alice"))
    assert not looks_like_jwt("a.b.c") and not looks_like_jwt("garbage")


def test_user_tokens_take_both_formats_when_jwt_is_configured():
    tokens = UserTokens("s3cret", 60, jwt=JwtVerifier(secret=SECRET))
    assert tokens.verify(hs256(sub="carol")) == "carol"
    assert tokens.verify(tokens.issue("dave")) == "dave"  # python -m service token's format
    with pytest.raises(Unauthorized, match="has expired"):
        tokens.verify(hs256(exp=int(time.time()) - 3600))


def test_a_jwt_is_refused_clearly_where_jwt_is_not_configured():
    with pytest.raises(Unauthorized, match="takes no JWTs"):
        UserTokens("s3cret", 60).verify(hs256())


def test_a_long_rs4096_jwt_is_not_cut_off_by_the_old_length_limit():
    big = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    token = jwt.encode(claims(sub="u" * 128, iss="https://id.example.com/" + "x" * 200), big,
                       algorithm="RS256")
    assert len(token) > 1024
    tokens = UserTokens("s3cret", 60, jwt=JwtVerifier(public_key=pem(big)))
    assert tokens.verify(token) == "u" * 128

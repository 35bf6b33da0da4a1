"""JWT keys from a JWKS URL (a real HTTP server in this process), and the
JWT_* settings checked at start."""

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from service.adapters.jwt_tokens import JWKS_REFETCH_COOLDOWN_S, JwtVerifier
from service.config import ConfigError, Settings
from service.domain.errors import Unauthorized
from tests.support.jwks_server import JwksServer, public_jwk

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
COOLDOWN = 0.3  # a short unknown-kid cooldown, so that the tests need not wait 10 s


def token(key, kid: str | None, algorithm: str = "RS256", sub: str = "alice") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 300}, key, algorithm=algorithm,
                      headers=headers)


def refused(verifier, raw: str, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        verifier.verify(raw)


@pytest.fixture
def jwks():
    with JwksServer([public_jwk(RSA_KEY, "rsa-1"), public_jwk(EC_KEY, "ec-1")]) as server:
        yield server


def test_keys_come_from_the_jwks_by_kid_and_the_set_is_cached(jwks):
    verifier = JwtVerifier(jwks_url=jwks.url)
    assert verifier.verify(token(RSA_KEY, "rsa-1")) == "alice"
    assert verifier.verify(token(EC_KEY, "ec-1", "ES256", sub="bob")) == "bob"
    assert verifier.verify(token(RSA_KEY, "rsa-1")) == "alice"
    assert jwks.requests == 1


def test_an_unknown_kid_refetches_once_and_a_rotated_key_is_then_taken(jwks):
    verifier = JwtVerifier(jwks_url=jwks.url, jwks_cooldown_s=COOLDOWN)
    assert verifier.verify(token(RSA_KEY, "rsa-1")) == "alice"
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.keys.append(public_jwk(rotated, "rsa-2"))
    time.sleep(COOLDOWN + 0.1)
    assert verifier.verify(token(rotated, "rsa-2")) == "alice"
    assert jwks.requests == 2  # the first fetch, and one refetch for the new kid


def test_an_unknown_kid_is_refused_after_its_one_refetch(jwks):
    verifier = JwtVerifier(jwks_url=jwks.url, jwks_cooldown_s=COOLDOWN)
    verifier.verify(token(RSA_KEY, "rsa-1"))
    time.sleep(COOLDOWN + 0.1)
    refused(verifier, token(RSA_KEY, "nobody"), "unknown key")
    assert jwks.requests == 2


def test_a_flood_of_random_kids_cannot_hammer_the_jwks_server(jwks):
    verifier = JwtVerifier(jwks_url=jwks.url, jwks_cooldown_s=COOLDOWN)
    verifier.verify(token(RSA_KEY, "rsa-1"))
    time.sleep(COOLDOWN + 0.1)
    for _ in range(100):
        refused(verifier, token(RSA_KEY, uuid.uuid4().hex), "unknown key")
    assert jwks.requests == 2  # one refetch, then the cooldown holds
    assert verifier.verify(token(RSA_KEY, "rsa-1")) == "alice"


def test_with_the_default_cooldown_a_flood_costs_no_fetch_beyond_the_first(jwks):
    assert JWKS_REFETCH_COOLDOWN_S >= 1
    verifier = JwtVerifier(jwks_url=jwks.url)
    for _ in range(50):
        refused(verifier, token(RSA_KEY, uuid.uuid4().hex), "unknown key")
    assert jwks.requests == 1


def test_a_token_without_kid_is_refused(jwks):
    refused(JwtVerifier(jwks_url=jwks.url), token(RSA_KEY, None), "has no kid")


def test_the_algorithm_is_pinned_by_the_jwk_not_the_token(jwks):
    verifier = JwtVerifier(jwks_url=jwks.url)
    # an HS256 token that names the RSA key: the algorithm-confusion attempt
    forged = jwt.encode({"sub": "alice", "exp": int(time.time()) + 300}, "x" * 32,
                        algorithm="HS256", headers={"kid": "rsa-1"})
    refused(verifier, forged, "not signed with RS256")
    refused(verifier, token(EC_KEY, "rsa-1", "ES256"), "not signed with RS256")


def test_a_symmetric_key_in_the_jwks_is_never_used(jwks):
    jwks.keys.append({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"})
    verifier = JwtVerifier(jwks_url=jwks.url)
    forged = jwt.encode({"sub": "alice", "exp": int(time.time()) + 300},
                        b"secret-secret-secret-secret-secret", algorithm="HS256",
                        headers={"kid": "hmac"})
    refused(verifier, forged, "not signed with RS256 or ES256")
    refused(verifier, token(RSA_KEY, "hmac"), "a key of a type this node does not take")


def test_an_unreachable_jwks_refuses_clearly_and_backs_off(jwks):
    jwks.down = True
    verifier = JwtVerifier(jwks_url=jwks.url, jwks_backoff_s=5.0)
    for _ in range(20):
        refused(verifier, token(RSA_KEY, "rsa-1"), "could not be fetched")
    assert jwks.requests == 1


def test_a_bad_signature_from_a_jwks_key(jwks):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(JwtVerifier(jwks_url=jwks.url), token(other, "rsa-1"), "bad signature")


# -- settings --------------------------------------------------------------

def pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def settings(tmp_path, **env) -> Settings:
    return Settings.from_env({"VAR_DIR": str(tmp_path), "PUBLISH_TOKEN": "p",
                              "ADMIN_TOKEN": "a", "USER_TOKEN_SECRET": "u", **env})


def test_jwt_is_off_by_default(tmp_path):
    s = settings(tmp_path)
    assert (s.jwt_secret, s.jwt_public_key, s.jwt_jwks_url) == ("", "", "")


def test_the_public_key_is_the_pem_itself_or_a_file(tmp_path):
    text = pem(EC_KEY)
    (tmp_path / "key.pem").write_text(text)
    assert settings(tmp_path, JWT_PUBLIC_KEY=text).jwt_public_key == text.strip()
    assert settings(tmp_path, JWT_PUBLIC_KEY=str(tmp_path / "key.pem")).jwt_public_key == \
        text.strip()
    escaped = text.strip().replace("\n", "\\n")
    assert settings(tmp_path, JWT_PUBLIC_KEY=escaped).jwt_public_key == text.strip()


@pytest.mark.parametrize("value, reason", [
    ("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----", "not a PEM public key"),
    ("/no/such/key.pem", "nor the path of a readable PEM file"),
    (pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "2048 bits or more"),
    (pem(ec.generate_private_key(ec.SECP384R1())), "P-256"),
    (pem(ed25519.Ed25519PrivateKey.generate()), "RSA key"),
    (RSA_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode(), "a private key"),
])
def test_a_bad_public_key_stops_the_start_with_a_clear_error(tmp_path, value, reason):
    with pytest.raises(ConfigError, match=reason):
        settings(tmp_path, JWT_PUBLIC_KEY=value)


def test_only_one_key_source_may_be_set(tmp_path):
    with pytest.raises(ConfigError, match="JWT_SECRET and JWT_JWKS_URL are both set"):
        settings(tmp_path, JWT_SECRET="s" * 32, JWT_JWKS_URL="https://id.example.com/jwks")


@pytest.mark.parametrize("env, reason", [
    ({"JWT_SECRET": "short"}, "at least 32 bytes"),
    ({"JWT_AUDIENCE": "notify"}, "no JWT key"),
    ({"JWT_JWKS_URL": "file:///etc/passwd"}, "http:// or https://"),
])
def test_other_bad_jwt_settings_stop_the_start(tmp_path, env, reason):
    with pytest.raises(ConfigError, match=reason):
        settings(tmp_path, **env)


def test_the_jwt_secret_is_kept_out_of_the_settings_repr(tmp_path):
    s = settings(tmp_path, JWT_SECRET="s" * 32, JWT_AUDIENCE="notify", JWT_ISSUER="me")
    assert (s.jwt_secret, s.jwt_audience, s.jwt_issuer) == ("s" * 32, "notify", "me")
    assert "s" * 32 not in repr(s)

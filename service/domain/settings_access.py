"""Settings table, access: the tokens, JWT user tokens and the Socket.IO rate
limits. Rows of service.domain.settings_table (see service.domain.setting)."""

from __future__ import annotations

from service.domain.setting import Kind, Setting, Unit
from service.domain.socket_rate_limits import (
    CONNECT_PER_IP,
    CONNECT_PER_USER,
    EVENT_PER_IP,
    EVENT_PER_USER,
)

SECTION = "Tokens and access"
DEV = "generated for dev"
NEEDS_A_KEY = "Needs one of the three keys above"

SETTINGS: tuple[Setting, ...] = (
    Setting("PUBLISH_TOKEN", Kind.SPECIAL, "bearer token for `POST /api/v1/notifications`",
            default="", shown_default=DEV),
    Setting("ADMIN_TOKEN", Kind.SPECIAL, "bearer token for the control API; the control log "
            "records its changes as actor `admin`", default="", shown_default=DEV),
    Setting("ADMIN_TOKENS", Kind.SPECIAL,
            "more admin tokens, each with a name the control log records as the actor: "
            "`alice:<token>,bob:<token>` (names of `A-Za-z0-9_.-`, tokens of 16 characters or "
            "more). No admin token may equal `PUBLISH_TOKEN`, and no two may be the same: the "
            "service refuses to start", default=""),
    Setting("ALERT_WEBHOOK_TOKENS", Kind.SPECIAL,
            "tokens that may call only the alert webhook, `POST /api/v1/alerts/grafana`, each "
            "with a name recorded as the actor: `grafana:<token>` (compose passes "
            "`grafana:${GRAFANA_WEBHOOK_TOKEN}`). Same rules as `ADMIN_TOKENS`; none may equal "
            "an admin or the publish token, nor share an admin token's name. Every other route "
            "answers them 401, as it does a token nobody was given; admin tokens are taken by "
            "the webhook too ([security](security.md))", default=""),
    Setting("ADMIN_CAN_PUBLISH", Kind.FLAG, "`1` lets admin tokens publish and read unread "
            "counts too; by default they get 401 there", default=False),
    Setting("USER_TOKEN_SECRET", Kind.SPECIAL, "HMAC key that signs user tokens", default="",
            shown_default=DEV),
    Setting("USER_TOKEN_TTL", Kind.INT, "seconds a user token stays valid", default=86_400,
            unit=Unit.SECONDS),
    Setting("JWT_SECRET", Kind.SPECIAL,
            "user tokens may also be standard JWTs ([socketio](socketio.md#jwt-user-tokens)): "
            "HS256 signed with this shared secret (32 bytes or more). Set at most one of "
            "`JWT_SECRET`, `JWT_PUBLIC_KEY` and `JWT_JWKS_URL`: with two, which key verifies a "
            "token would be in doubt, and the service refuses to start. With none, only the "
            "tokens of `python -m service token` are taken", default=""),
    Setting("JWT_PUBLIC_KEY", Kind.SPECIAL,
            "JWTs signed RS256 (an RSA key of 2048 bits or more) or ES256 (an EC P-256 key), "
            "verified with this public key: either the PEM text itself (starting "
            "`-----BEGIN PUBLIC KEY-----`; `\\n` escapes are taken for newlines) or the path "
            "of a PEM file. The key's type pins the algorithm. A value that is neither a "
            "readable PEM public key nor a file holding one, or a key of another type, stops "
            "the start with a one-line error", default=""),
    Setting("JWT_JWKS_URL", Kind.SPECIAL,
            "JWTs signed RS256 or ES256 by the key of the JWKS at this `http(s)://` URL that "
            "the token's `kid` names. The key set is fetched at the first JWT, kept 5 minutes, "
            "and fetched again when a token names an unknown `kid`, at most once per 10 s (a "
            "flood of made-up `kid`s costs the JWKS server nothing more); after a failed "
            "fetch, none for 5 s", default=""),
    Setting("JWT_AUDIENCE", Kind.SPECIAL,
            "when set, a JWT's `aud` must name it (a token without `aud` is refused); unset, "
            f"`aud` is not checked. {NEEDS_A_KEY}", default=""),
    Setting("JWT_ISSUER", Kind.SPECIAL,
            "when set, a JWT's `iss` must equal it (a token without `iss` is refused); unset, "
            f"`iss` is not checked. {NEEDS_A_KEY}", default=""),
    Setting("CONNECT_RATE_PER_IP", Kind.LIMIT,
            "Socket.IO connection attempts per client address, per second and at most at once "
            "(`RATE:BURST`); checked before the token, so forged tokens count too. One more is "
            "refused with `rate_limited` (`field: ip`). `0` turns it off. See "
            "[rate limits](#socketio-rate-limits)", default=CONNECT_PER_IP),
    Setting("CONNECT_RATE_PER_USER", Kind.LIMIT,
            "connection attempts per user, once the token has verified (`field: user`)",
            default=CONNECT_PER_USER),
    Setting("EVENT_RATE_PER_IP", Kind.LIMIT,
            "events (acks, anything else) per client address. One over it is ignored and "
            "answered with an `error` event `rate_limited` (`field: event`)",
            default=EVENT_PER_IP),
    Setting("EVENT_RATE_PER_USER", Kind.LIMIT, "events per user, over all their connections",
            default=EVENT_PER_USER),
)

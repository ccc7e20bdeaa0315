"""schemathesis hooks of `cargo xtask api-fuzz`: what the run knows about the server's state.

A JSON Schema can say what a well-formed request is, not which roles an org has, which page
tokens a list issued or which reset token is in a user's mailbox. schemathesis' check
`positive_data_acceptance` (schema-valid input must not get 400) would then fail for reasons
no schema can state. Instead of switching the check off, these hooks make every *positive*
case valid in those respects too, the way a client holding real references would send it.
Negative cases are never touched: the server must still refuse them.

The xtask passes the server's address, the admin's email and token, and the data dir
(for the dev mailbox) in `UOS_FUZZ_*` environment variables.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import pathlib
import random
import re
import secrets
import struct
import time
import urllib.error
import urllib.request
import uuid

import schemathesis

BASE = os.environ["UOS_FUZZ_BASE"]
TOKEN = os.environ["UOS_FUZZ_TOKEN"]
ADMIN_EMAIL = os.environ["UOS_FUZZ_ADMIN_EMAIL"]
MAILBOX = pathlib.Path(os.environ["UOS_FUZZ_MAILBOX"])

# Built-in roles every org has. `owner` is left out: granting it has rules of its own
# (only an owner may), which the run's platform admin need not meet.
ROLES = ["admin", "member", "billing", "auditor"]
# Granted by every built-in role, so a key with it fits any service account the run made.
SCOPES = ["org:read"]

# The list each paginated path is, and a cursor of the kind its keyset uses.
LISTS = {
    "/v1/audit/events": ("audit", lambda: str(random.randrange(0, 1 << 40))),
    "/v1/audit/checkpoints": ("checkpoints", None),
    "/v1/orgs": ("orgs", None),
    "/v1/users": ("users", None),
    "/v1/orgs/{slug}/users": ("members", None),
    "/v1/orgs/{slug}/invites": ("invites", None),
    "/v1/orgs/{slug}/roles": ("roles", lambda: random.choice(ROLES)),
    "/v1/orgs/{slug}/service-accounts": ("service_accounts", None),
    "/v1/orgs/{slug}/service-accounts/{id}/api-keys": ("api_keys", None),
    "/v1/orgs/{slug}/api-keys/overdue": ("overdue_keys", None),
    "/v1/webhooks/deliveries": ("webhooks", None),
    "/v1/orgs/{slug}/budget/overrides": ("overrides", None),
    "/v1/break-glass": ("break_glass", None),
    # Declared orgs page by slug.
    "/v1/declarative/status": ("declared", lambda: random.choice(["acme", "globex", "initech"])),
}

# What the run has seen of the admin's second factor (a pending TOTP secret, unused recovery
# codes), and the audit exports it requested.
state = {"totp": None, "recovery": [], "exports": []}

EXPORT_PATHS = ("/v1/audit/exports/{id}", "/v1/audit/exports/{id}/download")


def instant(text):
    """An RFC 3339 timestamp as Python reads it, or None (Python refuses leap seconds)."""
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (TypeError, ValueError):
        return None


def fix_window(body):
    """`since` must come before `until`: swap them when they are the wrong way round."""
    since, until = body.get("since"), body.get("until")
    if not (isinstance(since, str) and isinstance(until, str)):
        return
    a, b = instant(since), instant(until)
    if a is None or b is None or a == b:
        del body["until"]
    elif a > b:
        body["since"], body["until"] = until, since


def strong_password():
    """A password any strength meter accepts, never one used before."""
    return "Fz-" + secrets.token_urlsafe(24)


def page_token(kind, cursor):
    raw = f"{kind}:{cursor}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def totp_now(secret_b32):
    """RFC 6238 with the server's parameters: SHA-1, 30 s steps, 6 digits."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def call(method, path, body=None):
    req = urllib.request.Request(
        BASE + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, None


class ResetUsers:
    """Users that may reset their password by mail (the admin's own reset needs a second
    admin's approval). The server mails at most three tokens per address and hour, so the
    run keeps a pool and uses each address that often at most."""

    ORG = "fuzz-password-resets"
    SIZE = 40
    MAILS_PER_HOUR = 3

    def __init__(self):
        self.emails = []
        self.turn = 0

    def ensure(self):
        if self.emails:
            return
        status, _ = call(
            "POST", "/v1/orgs", {"slug": self.ORG, "display_name": "resets", "owner_email": ADMIN_EMAIL}
        )
        assert status in (201, 409), f"creating the reset org answered {status}"
        for i in range(self.SIZE):
            email = f"reset-{i}@example.com"
            status, invite = call(
                "POST", f"/v1/orgs/{self.ORG}/invites", {"email": email, "roles": ["member"]}
            )
            if status == 201:
                status, _ = call(
                    "POST",
                    "/v1/invites/accept",
                    {"token": invite["token"], "password": strong_password()},
                )
                assert status == 200, f"accepting an invite answered {status}"
            self.emails.append(email)

    def token(self):
        """A fresh reset token from the dev mailbox, or None if none arrived."""
        self.ensure()
        if self.turn >= len(self.emails) * self.MAILS_PER_HOUR:
            return None
        email = self.emails[self.turn % len(self.emails)]
        self.turn += 1
        seen = set(MAILBOX.glob("*"))
        call("POST", "/v1/auth/password/forgot", {"email": email})
        deadline = time.time() + 5
        while time.time() < deadline:
            for path in set(MAILBOX.glob("*")) - seen:
                try:
                    mail = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue  # still being written
                found = re.search(r"uosrst_[A-Za-z0-9_-]+", mail.get("text", ""))
                if mail.get("to") == email and found:
                    return found.group(0)
            time.sleep(0.05)
        return None


reset_users = ResetUsers()


def positive(case):
    return case.meta is not None and case.meta.generation.mode.is_positive


def negative(case):
    return case.meta is not None and case.meta.generation.mode.is_negative


def fix_roles(body, field):
    if isinstance(body, dict) and isinstance(body.get(field), list) and body[field]:
        body[field] = random.sample(ROLES, k=min(len(body[field]), len(ROLES)))


@schemathesis.hook
def map_case(ctx, case):
    return make_valid(case) if positive(case) else case


@schemathesis.hook
def before_add_examples(ctx, examples):
    """The examples phase does not run `map_case`."""
    for case in examples:
        if not negative(case):
            make_valid(case)


def make_valid(case):
    op = f"{case.operation.method.upper()} {case.operation.path}"
    body = case.body if isinstance(case.body, dict) else None
    query = case.query if isinstance(case.query, dict) else None

    if query is not None and "page_token" in query and case.operation.path in LISTS:
        kind, cursor = LISTS[case.operation.path]
        query["page_token"] = page_token(kind, cursor() if cursor else str(uuid.uuid4()))
    if case.operation.path in EXPORT_PATHS and state["exports"] and isinstance(case.path_parameters, dict):
        # An export the run requested (a download answers 409 until it is done).
        case.path_parameters["id"] = random.choice(state["exports"])
    if body is None:
        return case

    if op == "POST /v1/orgs" and "owner_email" in body:
        body["owner_email"] = ADMIN_EMAIL
    elif op in (
        "POST /v1/orgs/{slug}/invites",
        "POST /v1/orgs/{slug}/service-accounts",
        "PATCH /v1/orgs/{slug}/service-accounts/{id}",
        "PUT /v1/orgs/{slug}/users/{user_id}/roles",
    ):
        fix_roles(body, "roles")
    elif op in ("POST /v1/orgs/{slug}/roles", "PATCH /v1/orgs/{slug}/roles/{name}"):
        fix_roles(body, "inherits")
    elif op == "POST /v1/orgs/{slug}/service-accounts/{id}/api-keys" and body.get("scopes"):
        body["scopes"] = list(SCOPES)
    elif op == "POST /v1/auth/password/reset":
        token = reset_users.token()
        if token is not None:
            body["token"] = token
        body["new_password"] = strong_password()
    elif op == "POST /v1/invites/accept":
        # A new account needs one, an existing user's is ignored: valid either way.
        body["password"] = strong_password()
    elif op == "POST /v1/me/mfa/totp/confirm" and state["totp"]:
        body["code"] = totp_now(state["totp"])
    elif op == "DELETE /v1/me/mfa/totp" and state["recovery"]:
        body["code"] = state["recovery"][0]
    elif op == "POST /v1/audit/exports":
        fix_window(body)
    return case


@schemathesis.hook
def after_call(ctx, case, response):
    """Follow the admin's second factor as the run enrols and confirms it, and remember the
    exports it requested."""
    op = f"{case.operation.method.upper()} {case.operation.path}"
    ok = 200 <= response.status_code < 300
    if not ok:
        return
    if op == "POST /v1/me/mfa/totp":
        secret = response.json().get("secret")
        if isinstance(secret, str) and re.fullmatch(r"[A-Z2-7]+", secret):
            state["totp"] = secret
    elif op == "POST /v1/me/mfa/totp/confirm":
        state["totp"] = None
        state["recovery"] = list(response.json()["recovery_codes"])
    elif op == "DELETE /v1/me/mfa/totp":
        state["recovery"] = []
    elif op == "POST /v1/audit/exports":
        export_id = response.json().get("id")
        if isinstance(export_id, str):
            state["exports"].append(export_id)

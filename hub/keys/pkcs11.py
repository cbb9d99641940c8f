"""PKCS#11 signers: P-256 keys generated on an HSM token (SoftHSM2 in development).

Why it looks like this (facts checked on softhsm2 2.6.1 + python-pkcs11 0.10.1, see ADR 0013):
- python-pkcs11 initialises the library without OS locking and releases the GIL, so concurrent calls
  from several threads crash the process. Every PKCS#11 call here runs under one process-wide lock.
- Login is per application: a second login fails and closing any session logs every session out. So a
  process holds exactly one long-lived, logged-in session per token and never closes it.
- After `fork()` the child must re-initialise the library and log in again; handles from the parent are
  meaningless there. We detect the new pid (and reset the lock at fork) and do that lazily.
- A wrong PIN is never retried: real HSMs lock the token after a few attempts. The first failure is
  remembered and re-raised without another C_Login.
- The PIN never appears in a repr, an exception message or a log line.
- Keys are found by CKA_ID (= Fabric SKI, SHA-256 of the uncompressed point), tokens by label.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from hub.keys.signer import raw_to_der, ski

log = logging.getLogger(__name__)

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
_P256_OID = "1.2.840.10045.3.1.7"

# One lock for every PKCS#11 call in this process (all tokens, all modules: the library is shared).
_LOCK = threading.RLock()
_SESSIONS: dict[tuple[str, str], TokenSession] = {}
_LOADED_CONF: dict[str, str | None] = {}
_LIB_PID: dict[str, int] = {}  # module -> pid that initialised it
_EPOCH: dict[str, int] = {}  # module -> bumps on every re-initialisation (sessions become invalid)


class HsmError(Exception):
    """A PKCS#11 failure with a stable code. Never carries the PIN."""

    code = "hsm_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class HsmPinError(HsmError):
    code = "hsm_pin_incorrect"


class HsmTokenNotFound(HsmError):
    code = "hsm_token_not_found"


class HsmKeyNotFound(HsmError):
    code = "hsm_key_not_found"


class _Pin:
    """Holds the PIN so that it cannot leak through repr/str/logging by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Pin(***)"

    __str__ = __repr__


def _reset_lock_in_child() -> None:
    global _LOCK
    _LOCK = threading.RLock()


def _acquire_before_fork() -> None:
    _LOCK.acquire()


def _release_after_fork() -> None:
    _LOCK.release()


# Hold the lock across fork so the child never inherits it mid-call (a held lock would deadlock it).
os.register_at_fork(
    before=_acquire_before_fork, after_in_parent=_release_after_fork, after_in_child=_reset_lock_in_child
)


def _load_lib(module: str) -> Any:
    """Load the module once per process; refuse to silently reuse it under another SOFTHSM2_CONF."""
    conf = os.environ.get("SOFTHSM2_CONF")
    if module in _LOADED_CONF and _LOADED_CONF[module] != conf:
        raise HsmError(
            f"{module} was initialised with SOFTHSM2_CONF={_LOADED_CONF[module]!r}; it cannot switch to "
            f"{conf!r} inside one process (run in a new process)",
            "hsm_conf_changed",
        )
    try:
        lib = pkcs11.lib(module)
    except pkcs11.PKCS11Error as exc:
        raise HsmError(f"cannot load PKCS#11 module {module}: {type(exc).__name__}", "hsm_module") from None
    _LOADED_CONF[module] = conf
    if _LIB_PID.setdefault(module, os.getpid()) != os.getpid():
        # forked child: the parent's library state and handles are invalid here
        lib.reinitialize()
        _LIB_PID[module] = os.getpid()
        _EPOCH[module] = _EPOCH.get(module, 0) + 1
    return lib


def reinitialize_library(module: str) -> None:
    """C_Finalize + C_Initialize (e.g. to see a token another process just created). Every session
    of this process on `module` is gone afterwards; TokenSessions reopen theirs on next use."""
    with _LOCK:
        lib = pkcs11.lib(module)
        lib.reinitialize()  # SoftHSM re-reads SOFTHSM2_CONF and its token directory here
        _LOADED_CONF[module] = os.environ.get("SOFTHSM2_CONF")
        _LIB_PID[module] = os.getpid()
        _EPOCH[module] = _EPOCH.get(module, 0) + 1


class TokenSession:
    """The one logged-in session this process holds on one token. Use `token_session()` to get it."""

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        self.module = module
        self.token_label = token_label
        self._pin = _Pin(pin)
        self._pid = -1
        self._epoch = -1
        self._session: Any = None
        self._lib: Any = None
        self._pin_failed = False
        self.generation = 0  # bumps on every (re)login so cached key handles are refreshed

    def __repr__(self) -> str:
        return f"TokenSession(module={self.module!r}, token={self.token_label!r})"

    @property
    def lock(self) -> threading.RLock:
        return _LOCK

    def session(self) -> Any:
        """The live session; (re)opens it in a new process. Call with the lock held."""
        if (
            self._session is not None
            and self._pid == os.getpid()
            and self._epoch == _EPOCH.get(self.module, 0)
            and _LIB_PID.get(self.module) == os.getpid()
        ):
            return self._session
        if self._pin_failed:
            raise HsmPinError(f"PIN for token {self.token_label!r} was rejected earlier; not retrying")
        lib = _load_lib(self.module)
        try:
            token = lib.get_token(token_label=self.token_label)
        except pkcs11.NoSuchToken:
            raise HsmTokenNotFound(f"no token labelled {self.token_label!r} in {self.module}") from None
        except pkcs11.MultipleTokensReturned:
            raise HsmError(f"several tokens labelled {self.token_label!r}", "hsm_token_ambiguous") from None
        try:
            session = token.open(rw=True, user_pin=self._pin.reveal())
        except pkcs11.PinIncorrect:
            self._pin_failed = True
            raise HsmPinError(
                f"PIN rejected by token {self.token_label!r} (check LEDGERHUB_PKCS11_PIN / _PIN_FILE); "
                "not retried, real HSMs lock after a few failures"
            ) from None
        except pkcs11.PinLocked:
            self._pin_failed = True
            raise HsmPinError(f"token {self.token_label!r}: PIN locked", "hsm_pin_locked") from None
        except pkcs11.UserAlreadyLoggedIn:
            raise HsmError(
                f"token {self.token_label!r}: another session of this process is already logged in",
                "hsm_already_logged_in",
            ) from None
        except pkcs11.PKCS11Error as exc:
            raise HsmError(f"cannot open token {self.token_label!r}: {type(exc).__name__}") from None
        self._session = session
        self._lib = lib
        self._pid = os.getpid()
        self._epoch = _EPOCH.get(self.module, 0)
        self.generation += 1
        log.info("pkcs11 session open on token %s (pid %d)", self.token_label, self._pid)
        return session

    # --- key operations (each takes the process-wide lock) ---------------------------------------

    def generate_ec_key(self, label: str) -> Pkcs11Signer:
        """A new P-256 key pair on the token: sign-only, sensitive, never extractable; CKA_ID = SKI."""
        with _LOCK:
            s = self.session()
            params = s.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(_P256_OID)}, local=True
            )
            tmp_id = os.urandom(16)
            pub, priv = params.generate_keypair(
                store=True,
                label=label,
                id=tmp_id,
                public_template={
                    Attribute.VERIFY: True,
                    Attribute.ENCRYPT: False,
                    Attribute.WRAP: False,
                    Attribute.DERIVE: False,
                },
                private_template={
                    Attribute.SIGN: True,
                    Attribute.DECRYPT: False,
                    Attribute.UNWRAP: False,
                    Attribute.DERIVE: False,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                },
            )
            public_key = public_key_from_point(pub[Attribute.EC_POINT])
            key_id = bytes.fromhex(ski(public_key))
            pub[Attribute.ID] = key_id
            priv[Attribute.ID] = key_id
        return Pkcs11Signer(self, key_id.hex())

    def find_private(self, key_id: str) -> Any:
        with _LOCK:
            s = self.session()
            objs = list(
                s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: bytes.fromhex(key_id)})
            )
        if not objs:
            raise HsmKeyNotFound(f"no private key with id {key_id} on token {self.token_label!r}")
        return objs[0]

    def public_point(self, key_id: str) -> bytes:
        with _LOCK:
            s = self.session()
            objs = list(
                s.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: bytes.fromhex(key_id)})
            )
            if not objs:
                raise HsmKeyNotFound(f"no public key with id {key_id} on token {self.token_label!r}")
            return objs[0][Attribute.EC_POINT]

    def list_keys(self) -> list[tuple[str, str]]:
        """(key id hex, label) of every private key on the token."""
        with _LOCK:
            s = self.session()
            return [
                (o[Attribute.ID].hex(), o[Attribute.LABEL])
                for o in s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
            ]


def token_session(module: str, token_label: str, pin: str | None) -> TokenSession:
    """The process-wide session for (module, token). The PIN of the first caller wins."""
    if pin is None:
        raise HsmError(
            "no HSM PIN configured: set LEDGERHUB_PKCS11_PIN or LEDGERHUB_PKCS11_PIN_FILE", "hsm_no_pin"
        )
    with _LOCK:
        key = (module, token_label)
        existing = _SESSIONS.get(key)
        if existing is None:
            existing = _SESSIONS[key] = TokenSession(module, token_label, pin)
        return existing


def forget_sessions() -> None:
    """Drop cached sessions (tests that switch tokens). Logged-in state stays with the library."""
    with _LOCK:
        _SESSIONS.clear()


def public_key_from_point(point: bytes) -> ec.EllipticCurvePublicKey:
    """CKA_EC_POINT is a DER OCTET STRING around the point on SoftHSM, the bare point elsewhere."""
    raw = point
    if len(point) == 67 and point[0] == 0x04 and point[1] == 65 and point[2] == 0x04:
        raw = point[2:]
    elif len(point) == 68 and point[0] == 0x04 and point[1] == 0x81 and point[2] == 65:
        raw = point[3:]
    if len(raw) != 65 or raw[0] != 0x04:
        raise HsmError(f"unexpected CKA_EC_POINT encoding ({len(point)} bytes)", "hsm_bad_point")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


@dataclass
class _Cached:
    generation: int
    pid: int
    key: Any


class Pkcs11Signer:
    """A `Signer` whose private key lives on the token; the key is looked up by CKA_ID."""

    def __init__(
        self, token: TokenSession, key_id: str, certificate: x509.Certificate | None = None
    ) -> None:
        self._token = token
        self._key_id = key_id
        self._cert = certificate
        self._public = public_key_from_point(token.public_point(key_id))
        if ski(self._public) != key_id:
            raise HsmError(f"key {key_id}: CKA_ID does not match the SKI of its public key", "hsm_bad_key_id")
        self._cached: _Cached | None = None

    def __repr__(self) -> str:
        return f"Pkcs11Signer(token={self._token.token_label!r}, key_id={self._key_id[:16]}…)"

    @property
    def key_id(self) -> str:
        return self._key_id

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def certificate(self) -> x509.Certificate | None:
        return self._cert

    def set_certificate(self, certificate: x509.Certificate) -> None:
        self._cert = certificate

    def _private(self) -> Any:
        cached = self._cached
        session_gen = self._token.generation
        if cached is None or cached.pid != os.getpid() or cached.generation != session_gen:
            self._token.session()
            key = self._token.find_private(self._key_id)
            cached = self._cached = _Cached(self._token.generation, os.getpid(), key)
        return cached.key

    def sign(self, digest: bytes) -> bytes:
        if len(digest) != 32:
            raise ValueError("sign() takes a SHA-256 digest")
        with _LOCK:
            key = self._private()
            try:
                raw = key.sign(digest, mechanism=Mechanism.ECDSA)
            except pkcs11.PKCS11Error as exc:
                raise HsmError(f"sign with key {self._key_id[:16]}… failed: {type(exc).__name__}") from None
        return raw_to_der(raw)

    def private_attributes(self) -> dict[str, Any]:
        """SENSITIVE / EXTRACTABLE / SIGN etc. of the private key, for audits and tests."""
        with _LOCK:
            key = self._private()
            return {
                "sensitive": bool(key[Attribute.SENSITIVE]),
                "extractable": bool(key[Attribute.EXTRACTABLE]),
                "always_sensitive": bool(key[Attribute.ALWAYS_SENSITIVE]),
                "never_extractable": bool(key[Attribute.NEVER_EXTRACTABLE]),
                "sign": bool(key[Attribute.SIGN]),
                "decrypt": bool(key[Attribute.DECRYPT]),
                "derive": bool(key[Attribute.DERIVE]),
                "label": key[Attribute.LABEL],
                "id": key[Attribute.ID].hex(),
            }

    def read_private_value(self) -> bytes:
        """Ask the token for CKA_VALUE; a correct token refuses (AttributeSensitive). For tests/audits."""
        with _LOCK:
            return self._private()[Attribute.VALUE]


# --- SoftHSM2 setup ---------------------------------------------------------------------------------


def softhsm_conf_path(data_dir: Path) -> Path:
    return data_dir / "softhsm" / "softhsm2.conf"


def write_softhsm_conf(base: Path) -> Path:
    """A SoftHSM2 config with its own token directory under `base` (created 0700)."""
    tokens = base / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    os.chmod(tokens, 0o700)
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
        "slots.removable = false\n"
    )
    return conf

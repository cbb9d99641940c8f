"""Initialise a PKCS#11 token through the standard API (C_InitToken, then C_InitPIN as the security
officer), with both PINs passed over stdin, never on a command line.

`softhsm2-util --init-token` takes the SO PIN and the user PIN only as arguments (readable by every user in
`/proc/<pid>/cmdline`) or from a terminal, and python-pkcs11 does not wrap C_InitToken. So this module talks
to the PKCS#11 library with ctypes, in a child process of its own (`python -m hub.keys.p11init`): SoftHSM
lists its tokens when it is initialised, and the hub process may already hold the library with its own
sessions. The child reads one JSON object from stdin: {"module", "label", "so_pin", "pin"}; it answers one
JSON line on stdout: {"ok": true, "slot": n} or {"ok": false, "error": "<reason, never a PIN>"}.
"""

from __future__ import annotations

import ctypes
import json
import sys
from typing import Any

CKR_OK = 0
CKU_SO = 0
CKF_RW_SESSION = 0x2
CKF_SERIAL_SESSION = 0x4
CKF_TOKEN_INITIALIZED = 0x400
LABEL_LENGTH = 32
RV_NAMES = {
    0x05: "CKR_GENERAL_ERROR", 0x06: "CKR_FUNCTION_FAILED", 0x07: "CKR_ARGUMENTS_BAD",
    0xA0: "CKR_PIN_INCORRECT", 0xA1: "CKR_PIN_INVALID", 0xA2: "CKR_PIN_LEN_RANGE",
    0xE0: "CKR_TOKEN_NOT_PRESENT", 0x191: "CKR_CRYPTOKI_ALREADY_INITIALIZED",
}

ULONG = ctypes.c_ulong


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class _TokenInfo(ctypes.Structure):
    _fields_ = [
        ("label", ctypes.c_char * 32), ("manufacturerID", ctypes.c_char * 32), ("model", ctypes.c_char * 16),
        ("serialNumber", ctypes.c_char * 16), ("flags", ULONG), ("ulMaxSessionCount", ULONG),
        ("ulSessionCount", ULONG), ("ulMaxRwSessionCount", ULONG), ("ulRwSessionCount", ULONG),
        ("ulMaxPinLen", ULONG), ("ulMinPinLen", ULONG), ("ulTotalPublicMemory", ULONG),
        ("ulFreePublicMemory", ULONG), ("ulTotalPrivateMemory", ULONG), ("ulFreePrivateMemory", ULONG),
        ("hardwareVersion", _Version), ("firmwareVersion", _Version), ("utcTime", ctypes.c_char * 16),
    ]


class InitError(Exception):
    pass


def _check(rv: int, what: str) -> None:
    if rv != CKR_OK:
        raise InitError(f"{what} failed: {RV_NAMES.get(rv, hex(rv))}")


def padded_label(label: str) -> bytes:
    raw = label.encode()
    if not raw or len(raw) > LABEL_LENGTH:
        raise InitError(f"a token label must be 1 to {LABEL_LENGTH} bytes")
    return raw.ljust(LABEL_LENGTH, b" ")


def _free_slot(lib: Any) -> int:
    count = ULONG(0)
    _check(lib.C_GetSlotList(ctypes.c_ubyte(1), None, ctypes.byref(count)), "C_GetSlotList")
    slots = (ULONG * max(1, count.value))()
    _check(lib.C_GetSlotList(ctypes.c_ubyte(1), slots, ctypes.byref(count)), "C_GetSlotList")
    for slot in slots[: count.value]:
        info = _TokenInfo()
        _check(lib.C_GetTokenInfo(ULONG(slot), ctypes.byref(info)), "C_GetTokenInfo")
        if not info.flags & CKF_TOKEN_INITIALIZED:
            return int(slot)
    raise InitError("no free (uninitialised) token slot")


def init_token(module: str, label: str, so_pin: str, pin: str) -> int:
    """C_InitToken on the first free slot with `so_pin` and `label`, then C_InitPIN(`pin`) as the SO.
    Returns the slot id. Call in a process of its own (see the module docstring)."""
    name = padded_label(label)
    lib = ctypes.CDLL(module)
    _check(lib.C_Initialize(None), "C_Initialize")
    try:
        slot = _free_slot(lib)
        so = so_pin.encode()
        _check(lib.C_InitToken(ULONG(slot), ctypes.c_char_p(so), ULONG(len(so)), ctypes.c_char_p(name)),
               "C_InitToken")
        session = ULONG(0)
        _check(lib.C_OpenSession(ULONG(slot), ULONG(CKF_SERIAL_SESSION | CKF_RW_SESSION), None, None,
                                 ctypes.byref(session)), "C_OpenSession")
        try:
            _check(lib.C_Login(session, ULONG(CKU_SO), ctypes.c_char_p(so), ULONG(len(so))), "C_Login (SO)")
            user = pin.encode()
            _check(lib.C_InitPIN(session, ctypes.c_char_p(user), ULONG(len(user))), "C_InitPIN")
            lib.C_Logout(session)
        finally:
            lib.C_CloseSession(session)
        return slot
    finally:
        lib.C_Finalize(None)


def main() -> int:
    try:
        request = json.loads(sys.stdin.read())
        slot = init_token(request["module"], request["label"], request["so_pin"], request["pin"])
    except (InitError, OSError, KeyError, ValueError) as exc:
        # the reason names a PKCS#11 return code or a missing field, never a PIN value
        reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        print(json.dumps({"ok": False, "error": reason[:300]}))
        return 1
    print(json.dumps({"ok": True, "slot": slot}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

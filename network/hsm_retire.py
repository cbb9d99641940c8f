"""Retire a rotated node key (`ledgerhub network retire-node-key <node>`, ADR 0056).

After `rotate-node-key` (network/hsm_rotate.py) the node signs with its new key, but the old certificate
still chains to the org CA, so anything signed with the old key would still be accepted. Retiring revokes
every previous certificate of the node: a CRL signed by the org CA (its AuthorityKeyIdentifier is the CA's
SubjectKeyIdentifier, which is how Fabric's MSP finds the CRL for a certificate's issuer) replaces the org's
earlier CRL from that CA in the `revocation_list` of the org's MSP definition, by a channel config update
signed by the org's admin (the MSP value's mod_policy is the org's `Admins`). From the block that carries
the update on, every node validates identities against the new MSP: endorsements, proposals and block
signatures under a revoked certificate fail.

The old key object stays on the node's token (deleting it is a token operation with no effect on what the
network accepts; the ADR names it as the operator's last step).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fabric_protos.common import configtx_pb2
from fabric_protos.msp import msp_config_pb2

from network import configupdate, hsm
from network.manage import make_layout
from network.procs import NetworkError

CRL_DAYS = 3650  # Fabric's MSP ignores nextUpdate; the CRL is replaced whenever another key is retired


def previous_cert(run_dir: Path, node: str, ski: str) -> Path:
    """Where rotate() kept the certificate of `node`'s key `ski` when it replaced it."""
    return run_dir / "hsm" / node / "previous" / f"{ski}.pem"


def build_crl(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, serials: set[int], number: int
) -> x509.CertificateRevocationList:
    """A CRL by `ca_cert` revoking `serials` (AKI = the CA's SKI, CRL number `number`)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ski_ext = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=1))
        .next_update(now + dt.timedelta(days=CRL_DAYS))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski_ext), False)
        .add_extension(x509.CRLNumber(number), False)
    )
    for serial in sorted(serials):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    return builder.sign(ca_key, hashes.SHA256())


def _aki(crl: x509.CertificateRevocationList) -> bytes | None:
    try:
        return crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def revoke_in_msp(
    fabric: msp_config_pb2.FabricMSPConfig,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    serials: set[int],
) -> set[int]:
    """Replace the CA's CRL in `fabric.revocation_list` by one revoking its serials plus `serials`."""
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    keep: list[bytes] = []
    revoked = set(serials)
    number = 1
    for pem in fabric.revocation_list:
        crl = x509.load_pem_x509_crl(bytes(pem))
        if _aki(crl) == ca_ski:
            revoked |= {r.serial_number for r in crl}
            with contextlib.suppress(x509.ExtensionNotFound):
                number = max(
                    number, crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
                )
        else:
            keep.append(bytes(pem))
    crl = build_crl(ca_cert, ca_key, revoked, number)
    del fabric.revocation_list[:]
    fabric.revocation_list.extend([*keep, crl.public_bytes(serialization.Encoding.PEM)])
    return revoked


def retire(run_dir: Path, node: str) -> dict[str, Any]:
    """Revoke every earlier certificate of `node` in its org's channel MSP; {node, revoked, config_block}."""
    network_json = run_dir / "network.json"
    port_base = json.loads(network_json.read_text())["port_base"] if network_json.is_file() else None
    layout = make_layout(run_dir, port_base)
    if not hsm.enabled(layout.run_dir):
        raise NetworkError(f"{layout.run_dir} is not a network brought up with --hsm")
    doc = hsm.state(layout.run_dir)
    if node not in doc["nodes"]:
        raise NetworkError(f"unknown node {node!r}; HSM nodes: {', '.join(sorted(doc['nodes']))}")
    entry = doc["nodes"][node]
    pending = [s for s in entry.get("previous_skis", []) if s not in entry.get("retired_skis", [])]
    if not pending:
        raise NetworkError(f"{node} has no rotated-out key to retire (rotate-node-key first)")
    certs = []
    for s in pending:
        path = previous_cert(layout.run_dir, node, s)
        if not path.is_file():
            raise NetworkError(f"{node}: the certificate of key {s[:16]}… was not kept ({path})")
        certs.append(x509.load_pem_x509_certificate(path.read_bytes()))
    current = x509.load_pem_x509_certificate(Path(entry["signcert"]).read_bytes())
    serials = {c.serial_number for c in certs}
    if current.serial_number in serials:  # never revoke the key the node signs with now
        raise NetworkError(f"{node}: an old certificate has the current certificate's serial number")
    spec = next(n for n in hsm.nodes(layout) if n.name == node)
    ca_cert = x509.load_pem_x509_certificate(next(iter(sorted(spec.ca_dir.glob("*-cert.pem")))).read_bytes())
    ca_key = serialization.load_pem_private_key((spec.ca_dir / "priv_sk").read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise NetworkError(f"{spec.ca_dir / 'priv_sk'} is not an EC key")
    if node == "orderer":
        mspid, signer = "OrdererMSP", "orderer"
    else:
        org = layout.org(node.removeprefix("peer-"))
        mspid, signer = org.mspid, org.key
    revoked: set[int] = set()

    def change(config: configtx_pb2.Config) -> None:
        group = configupdate.org_group(config, mspid)
        configupdate.edit_msp(group, lambda f: revoked.update(revoke_in_msp(f, ca_cert, ca_key, serials)))

    previous_config = configupdate.update_config(layout, change, [signer])
    entry["retired_skis"] = [*entry.get("retired_skis", []), *pending]
    state_file = hsm.hsm_dir(layout) / hsm.STATE
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(state_file)
    return {
        "node": node,
        "mspid": mspid,
        "retired_skis": pending,
        "revoked_serials": [format(s, "x") for s in sorted(revoked)],
        "previous_config_block": previous_config,
    }

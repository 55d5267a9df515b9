"""Leads as ADF XML (Auto-lead Data Format 1.0), the format dealer CRMs import leads in.

One ``<adf>`` document holds one ``<prospect>`` per lead: its id (``source="drivesight"``), the request date,
the vehicle of interest, the customer's contact (name, e-mail, phone) and message, the vendor (the dealer) and
the provider. Built with the standard library's ElementTree, so every value is escaped; a value the XML 1.0
character set cannot hold (a control character pasted into a form) is dropped from that value.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

#: what a lead's intent asks of the dealer, in ADF's words
_INTEREST = {"order": "buy", "quote": "buy", "test_drive": "test-drive", "service": "service"}
# characters XML 1.0 cannot carry (everything below space but tab, newline, carriage return)
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(parent: ET.Element, tag: str, value: object, **attrs: str) -> ET.Element | None:
    if value is None or value == "":
        return None
    element = ET.SubElement(parent, tag, attrs)
    element.text = _NOT_XML.sub("", value.isoformat() if isinstance(value, datetime) else str(value))
    return element


def to_adf(leads: Sequence[Mapping[str, Any]], *, dealer_name: str | None = None) -> bytes:
    """An ADF 1.0 document of ``leads`` (rows with the ``leads`` table's columns), UTF-8 bytes."""
    adf = ET.Element("adf")
    for lead in leads:
        prospect = ET.SubElement(adf, "prospect", {"status": "new"})
        _text(prospect, "id", lead["lead_id"], sequence="1", source="drivesight")
        _text(prospect, "requestdate", lead["created_at"])
        vehicle = ET.SubElement(
            prospect, "vehicle", {"interest": _INTEREST.get(str(lead.get("intent")), "buy"), "status": "new"}
        )
        _text(vehicle, "make", "drivesight")
        _text(vehicle, "model", lead.get("model_interest"))
        customer = ET.SubElement(prospect, "customer")
        contact = ET.SubElement(customer, "contact")
        _text(contact, "name", lead.get("name") or "(no name given)", part="full")
        _text(contact, "email", lead.get("email"))
        _text(contact, "phone", lead.get("phone"), type="voice")
        if lead.get("city"):
            address = ET.SubElement(contact, "address")
            _text(address, "city", lead.get("city"))
            _text(address, "regioncode", lead.get("region"))
        comments = " | ".join(
            str(part)
            for part in (
                lead.get("message"),
                f"grade {lead['grade']} ({lead.get('score')})" if lead.get("grade") else None,
                f"first contact due {lead['contact_due_at'].isoformat()}"
                if lead.get("contact_due_at")
                else None,
                f"channel {lead.get('channel')}, activity {lead.get('activity')}"
                if lead.get("channel")
                else None,
            )
            if part
        )
        _text(customer, "comments", comments)
        vendor = ET.SubElement(prospect, "vendor")
        _text(vendor, "id", lead.get("dealer_id"), source="drivesight")
        _text(vendor, "vendorname", dealer_name or lead.get("dealer_id"))
        provider = ET.SubElement(prospect, "provider")
        _text(provider, "name", "drivesight", part="full")
    body = ET.tostring(adf, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<?adf version="1.0"?>\n' + body + "\n").encode()

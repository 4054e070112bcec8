"""The answer of ``os-getConsoleOutput``: ``{"output": "…"}``, in XML ``<output>…</output>``
in no namespace (nova 2013.1 had no template for it: its default serializer wrote the one
member as the root element's text).

A guest prints what it likes. As nova did, control characters other than tab and newline go
before either format is written (XML 1.0 cannot carry them; a serial console's carriage
returns go with them), and in XML the two code points it cannot carry either (U+FFFE, U+FFFF)
become U+FFFD.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from aiohttp import web

from api_gateway.http.negotiation import CONTENT_TYPES, Format, response_format
from api_gateway.http.responses import render as render_json
from api_gateway.http.serializers import xml

#: what nova removed from a console's output (``[\x00-\x08\x0B-\x1F]``)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f]")
#: what is left that XML 1.0 cannot carry (decoded logs have no lone surrogates, but a
#: driver's text might)
_NOT_XML = re.compile("[\ud800-\udfff\ufffe\uffff]")


def printable(output: str) -> str:
    """The output as nova answered it: without the control characters but tab and newline."""
    return _CONTROL.sub("", output)


def render(request: web.Request, output: str) -> web.StreamResponse:
    """200 with the output, in the negotiated format."""
    text = printable(output)
    if response_format(request) is Format.XML:
        body = "<output>" + escape(_NOT_XML.sub("\ufffd", text)) + "</output>"
        return web.Response(body=xml.flat_document(body), content_type=CONTENT_TYPES[Format.XML])
    return render_json(request, {"output": text})

"""Hypervisors of their own for several hosts in one process, on libvirt's test ("mock")
driver.

``test:///default`` is one hypervisor shared by every connection of a process, so the agents
of ``stratus up`` on it would all see (and fight over) the same domains. A
``test:///<file>`` URI opens a private hypervisor described by the file, a ``<node>`` with
its ``<cpu>`` and ``<memory>``: every host gets a file of its own, and its URI is the host's
hypervisor (what its agent reports, where a live migration goes). Each connection to such a
URI starts from the file afresh, so the agent's own connection is the only one that sees its
domains.
"""

from __future__ import annotations

import re
from pathlib import Path

#: libvirt's test hypervisor shared by a whole process
DEFAULT_URI = "test:///default"

#: the machine ``test:///default`` describes: 16 CPUs (2 NUMA nodes of 2 sockets of 2 cores
#: of 2 threads) at 1400 MHz, and 3 GiB of memory (in KiB)
NODE_XML = """<node>
  <cpu>
    <nodes>2</nodes>
    <sockets>2</sockets>
    <cores>2</cores>
    <threads>2</threads>
    <active>16</active>
    <mhz>1400</mhz>
    <model>i686</model>
  </cpu>
  <memory>3145728</memory>
</node>
"""


def node_uri(directory: Path, host: str) -> str:
    """Write the node file of ``host`` in ``directory`` (again, if it is there: it holds no
    state) and return the URI of its hypervisor."""
    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / f"{re.sub(r'[^A-Za-z0-9._-]', '_', host)}.xml").resolve()
    path.write_text(NODE_XML, encoding="utf-8")
    return f"test://{path}"

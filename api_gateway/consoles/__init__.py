"""Consoles (nova 2013.1's os-consoles): a URL that opens a running guest's display.

* ``types.py``: the console types of the API, the display protocol each reaches and the URL
  each answers;
* ``actions.py``: the server actions ``os-getVNCConsole`` and ``os-getSPICEConsole``, which
  ask the server's host where the display listens (a bus call), keep a token for it and
  answer the URL;
* ``proxy.py``: the console proxy, a WebSocket (websockify's protocol) that takes a URL's
  token and relays bytes between the client and the display;
* ``pages.py``: noVNC's and spice-html5's pages, where their Debian packages are installed;
* ``output.py``: the server action ``os-getConsoleOutput`` (nova's os-console-output), the
  end of a server's serial console log, which its host reads (a bus call too).

The proxy and the pages are served by every gateway, without a Keystone token: the console
token is the credential, as in nova.
"""

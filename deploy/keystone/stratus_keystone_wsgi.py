"""Keystone's WSGI application under gunicorn.

oslo.config parses ``sys.argv`` when the application is loaded, and under gunicorn those are
gunicorn's own arguments: they are cleared and the configuration file named first.
"""

import os
import sys

sys.argv = sys.argv[:1]
os.environ.setdefault("OS_KEYSTONE_CONFIG_FILES", "/etc/keystone/keystone.conf")

from keystone.wsgi.api import application  # noqa: E402,F401

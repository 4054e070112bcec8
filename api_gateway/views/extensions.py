"""The extensions Stratus implements (guide 1.8), and how ``GET /extensions`` shows each
(Ex 1.34–1.37).

To add one, append an ``Extension`` to ``EXTENSIONS`` when its feature is in place. Its
``alias`` is also the prefix of the members it adds (``OS-EXT-STS:vm_state``): the XML
serializer writes those in the extension's ``namespace``, and learns the pair from this
registry (``EXTENSION_NAMESPACES`` is filled when this module is imported, which the
application factory does through the extensions controller).

Names, namespaces, dates and descriptions are the reference implementation's (nova 2013.1,
``samples/nova-2013.1/all_extensions``), so clients that look an extension up by alias or
namespace find what they expect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api_gateway.http.serializers import xml


@dataclass(frozen=True)
class Extension:
    alias: str
    name: str
    namespace: str
    updated: str
    description: str
    #: Documentation links (``rel="describedby"``); nova 2013.1 published none.
    links: tuple[Mapping[str, str], ...] = ()


EXTENSIONS: tuple[Extension, ...] = (
    Extension(
        alias="os-admin-actions",
        name="AdminActions",
        namespace="http://docs.openstack.org/compute/ext/admin-actions/api/v1.1",
        updated="2011-09-20T00:00:00+00:00",
        description=(
            "Enable admin-only server actions\n\n"
            "    Actions include: pause, unpause, suspend, resume, migrate,\n"
            "    resetNetwork, injectNetworkInfo, lock, unlock, createBackup\n"
            "    "
        ),
    ),
    Extension(
        # OS-EXT-STS:vm_state, task_state, power_state in server representations
        alias="OS-EXT-STS",
        name="ExtendedStatus",
        namespace="http://docs.openstack.org/compute/ext/extended_status/api/v1.1",
        updated="2011-11-03T00:00:00+00:00",
        description="Extended Status support.",
    ),
    Extension(
        # OS-EXT-SRV-ATTR:host, hypervisor_hostname, instance_name (administrators). nova
        # 2013.1 gave it extended_status's namespace; namespaces are unique per extension
        # (guide 1.8) and a server shows both, so it has one of its own here
        alias="OS-EXT-SRV-ATTR",
        name="ExtendedServerAttributes",
        namespace="http://docs.openstack.org/compute/ext/extended_server_attributes/api/v2",
        updated="2011-11-03T00:00:00+00:00",
        description="Extended Server Attributes support.",
    ),
    Extension(
        # GET /servers/{id}/os-instance-actions[/{request_id}]: the audit trail
        alias="os-instance-actions",
        name="InstanceActions",
        namespace="http://docs.openstack.org/compute/ext/instance-actions/api/v1.1",
        updated="2013-02-08T00:00:00+00:00",
        description="View a log of actions and events taken on an instance.",
    ),
    Extension(
        # config_drive on create (and in server representations): the drive the agent
        # builds and attaches (compute_agent/config_drive.py)
        alias="os-config-drive",
        name="ConfigDrive",
        namespace="http://docs.openstack.org/compute/ext/config_drive/api/v1.1",
        updated="2012-07-16T00:00:00+00:00",
        description="Config Drive Extension.",
    ),
    Extension(
        # the os-getConsoleOutput server action: the end of a server's serial console log
        # (api_gateway/consoles/output.py)
        alias="os-console-output",
        name="ConsoleOutput",
        namespace="http://docs.openstack.org/compute/ext/os-console-output/api/v2",
        updated="2011-12-08T00:00:00+00:00",
        description="Console log output support, with tailing ability.",
    ),
    Extension(
        # the os-getVNCConsole and os-getSPICEConsole server actions, and the console proxy
        # their URLs lead to (api_gateway/consoles)
        alias="os-consoles",
        name="Consoles",
        namespace="http://docs.openstack.org/compute/ext/os-consoles/api/v2",
        updated="2011-12-23T00:00:00+00:00",
        description="Interactive Console support.",
    ),
    Extension(
        # OS-FLV-DISABLED:disabled in flavor representations
        alias="OS-FLV-DISABLED",
        name="FlavorDisabled",
        namespace="http://docs.openstack.org/compute/ext/flavor_disabled/api/v1.1",
        updated="2012-08-29T00:00:00+00:00",
        description="Support to show the disabled status of a flavor.",
    ),
    Extension(
        # OS-FLV-EXT-DATA:ephemeral in flavor representations
        alias="OS-FLV-EXT-DATA",
        name="FlavorExtraData",
        namespace="http://docs.openstack.org/compute/ext/flavor_extra_data/api/v1.1",
        updated="2011-09-14T00:00:00+00:00",
        description="Provide additional data for flavors.",
    ),
    Extension(
        # os-flavor-access:is_public in flavor representations; no access management
        # (/flavors/{id}/os-flavor-access, addTenantAccess): every flavor is public
        alias="os-flavor-access",
        name="FlavorAccess",
        namespace="http://docs.openstack.org/compute/ext/flavor_access/api/v2",
        updated="2012-08-01T00:00:00+00:00",
        description="Flavor access support.",
    ),
    Extension(
        # rxtx_factor in flavor representations
        alias="os-flavor-rxtx",
        name="FlavorRxtx",
        namespace="http://docs.openstack.org/compute/ext/flavor_rxtx/api/v1.1",
        updated="2012-08-29T00:00:00+00:00",
        description="Support to show the rxtx status of a flavor.",
    ),
    Extension(
        # swap in flavor representations ("" for none, as nova showed it)
        alias="os-flavor-swap",
        name="FlavorSwap",
        namespace="http://docs.openstack.org/compute/ext/flavor_swap/api/v1.1",
        updated="2012-08-29T00:00:00+00:00",
        description="Support to show the swap status of a flavor.",
    ),
    Extension(
        # GET /flavors/{id}/os-extra_specs[/{key}] for everyone, writes for administrators
        alias="os-flavor-extra-specs",
        name="FlavorExtraSpecs",
        namespace="http://docs.openstack.org/compute/ext/flavor_extra_specs/api/v1.1",
        updated="2011-06-23T00:00:00+00:00",
        description="Instance type (flavor) extra specs.",
    ),
    Extension(
        # the evacuate server action (administrators): rebuild a dead host's server elsewhere
        alias="os-evacuate",
        name="Evacuate",
        namespace="http://docs.openstack.org/compute/ext/evacuate/api/v2",
        updated="2013-01-06T00:00:00+00:00",
        description="Enables server evacuation.",
    ),
    Extension(
        # GET /os-hosts, GET and PUT /os-hosts/{host} (administrators)
        alias="os-hosts",
        name="Hosts",
        namespace="http://docs.openstack.org/compute/ext/hosts/api/v1.1",
        updated="2011-06-29T00:00:00+00:00",
        description="Admin-only host administration.",
    ),
    Extension(
        # GET, POST /os-keypairs, GET, DELETE /os-keypairs/{name}: the caller's key pairs
        alias="os-keypairs",
        name="Keypairs",
        namespace="http://docs.openstack.org/compute/ext/keypairs/api/v1.1",
        updated="2011-08-08T00:00:00+00:00",
        description="Keypair Support.",
    ),
    Extension(
        # min_count, max_count and return_reservation_id of server create; reservation_id
        # as a list filter
        alias="os-multiple-create",
        name="MultipleCreate",
        namespace="http://docs.openstack.org/compute/ext/multiplecreate/api/v1.1",
        updated="2012-08-07T00:00:00+00:00",
        description="Allow multiple create in the Create Server v1.1 API.",
    ),
    Extension(
        # GET, PUT /os-quota-sets/{project}, GET /os-quota-sets/{project}/defaults
        alias="os-quota-sets",
        name="Quotas",
        namespace="http://docs.openstack.org/compute/ext/quotas-sets/api/v1.1",
        updated="2011-08-08T00:00:00+00:00",
        description="Quotas management support.",
    ),
    Extension(
        # GET /os-services, PUT /os-services/enable and /disable (administrators)
        alias="os-services",
        name="Services",
        namespace="http://docs.openstack.org/compute/ext/services/api/v2",
        updated="2012-10-28T00:00:00+00:00",
        description="Services support.",
    ),
    Extension(
        # os-services' id and disabled_reason, and PUT /os-services/disable-log-reason
        # (nova 2013.2)
        alias="os-extended-services",
        name="ExtendedServices",
        namespace="http://docs.openstack.org/compute/ext/extended_services/api/v2",
        updated="2013-05-17T00:00:00+00:00",
        description="Extended services support.",
    ),
    Extension(
        # GET /os-migrations (administrators); nova added it in 2013.2
        alias="os-migrations",
        name="Migrations",
        namespace="http://docs.openstack.org/compute/ext/migrations/api/v2.0",
        updated="2013-05-30T00:00:00+00:00",
        description="Provide data on migrations.",
    ),
    Extension(
        # the os-stop and os-start server actions
        alias="os-server-start-stop",
        name="ServerStartStop",
        namespace="http://docs.openstack.org/compute/ext/servers/api/v1.1",
        updated="2012-01-23T00:00:00+00:00",
        description="Start/Stop instance compute API support.",
    ),
    Extension(
        # user_data on create, delivered on the server's config drive
        alias="os-user-data",
        name="UserData",
        namespace="http://docs.openstack.org/compute/ext/userdata/api/v1.1",
        updated="2012-08-07T00:00:00+00:00",
        description="Add user_data to the Create Server v1.1 API.",
    ),
    Extension(
        # the total*Used members of GET /limits' absolute limits
        alias="os-used-limits",
        name="UsedLimits",
        namespace="http://docs.openstack.org/compute/ext/used_limits/api/v1.1",
        updated="2012-07-13T00:00:00+00:00",
        description="Provide data on limited resources that are being used.",
    ),
)

_BY_ALIAS = {extension.alias: extension for extension in EXTENSIONS}
if len(_BY_ALIAS) != len(EXTENSIONS):
    raise RuntimeError("two extensions share an alias")


def all_extensions() -> list[Extension]:
    """Every extension, by alias (the reference implementation's order)."""
    return sorted(EXTENSIONS, key=lambda extension: extension.alias)


def find(alias: str) -> Extension | None:
    return _BY_ALIAS.get(alias)


xml.EXTENSION_NAMESPACES.update({e.alias: e.namespace for e in EXTENSIONS})


def extension(ext: Extension) -> dict[str, Any]:
    """One extension's representation."""
    return {
        "name": ext.name,
        "namespace": ext.namespace,
        "alias": ext.alias,
        "updated": ext.updated,
        "description": ext.description,
        "links": [dict(link) for link in ext.links],
    }

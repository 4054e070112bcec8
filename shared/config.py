"""The one settings model of every Stratus process.

Every option is an environment variable with the ``STRATUS_`` prefix (``STRATUS_DATABASE_URL``,
``STRATUS_AMQP_URL``, ...) or a line in the optional file named by ``STRATUS_CONFIG_FILE``
(dotenv syntax). ``docs/configuration.md`` lists them all; keep the two in step.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.networks import DEFAULT_NETWORKS, parse_networks
from shared.rate_limits import DEFAULT_RATE_LIMITS, parse_rate_limits

#: The settings given as text in a syntax of their own, each with what parses it (and raises
#: ``ValueError`` on a malformed one).
_PARSED: dict[str, Callable[[str], object]] = {
    "rate_limits": parse_rate_limits,
    "networks": parse_networks,
}


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("stratus", appauthor=False))


class Settings(BaseSettings):
    """Settings for every role; each role reads the part it needs."""

    model_config = SettingsConfigDict(
        env_prefix="STRATUS_",
        env_file=os.environ.get("STRATUS_CONFIG_FILE"),
        extra="ignore",
    )

    # --- where the shared services are -------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL. Unset: `stratus up` runs an embedded PostgreSQL.",
    )
    amqp_url: str | None = Field(
        default=None,
        description="RabbitMQ URL. Unset: `stratus up` uses the in-process bus.",
    )
    amqp_prefix: str = Field(
        default="stratus",
        description="Prefix of every exchange and queue name, so deployments can share a vhost.",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where `stratus up` keeps its embedded PostgreSQL and instance files.",
    )
    db_pool_min: int = 2
    db_pool_max: int = 10
    api_statement_timeout_s: float = Field(
        default=5.0,
        ge=0,
        description="How long one statement of a gateway may run, lock waits included, before "
        "PostgreSQL cancels it and the request is answered 503 with Retry-After; 0: no "
        "limit. Conductors are not bounded.",
    )
    api_db_timeout_s: float = Field(
        default=10.0,
        ge=0,
        description="How long a gateway waits for PostgreSQL to answer at all (to connect, "
        "to one statement, to cancel it) before it gives the connection up and answers 503 "
        "with Retry-After. The statement timeout is PostgreSQL's own and needs the network: "
        "when packets to the database are dropped, only this bounds a request. Longer than "
        "api_statement_timeout_s, so a slow statement is cancelled by PostgreSQL first; "
        "0: no limit.",
    )

    # --- gateway -----------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8774
    public_url: str | None = Field(
        default=None,
        description="Base URL used in links when the gateway sits behind a proxy; "
        "by default links are built from the request's Host header.",
    )
    auth_strategy: Literal["noauth", "keystone"] = Field(
        default="noauth",
        description="`noauth` (development: the token is `user:project`) or `keystone` "
        "(tokens validated by Keystone v3; see the keystone_* settings).",
    )
    noauth_allow_remote: bool = Field(
        default=False,
        description="Let a `noauth` gateway listen on a non-loopback address (it refuses "
        "to start otherwise): only where nothing untrusted can reach that address, e.g. "
        "behind the compose file's proxy on 127.0.0.1. Every start then logs a WARNING.",
    )
    max_request_body_bytes: int = 114688
    max_page_size: int = 1000
    render_cache_entries: int = Field(
        default=20000,
        description="Rendered server representations each gateway keeps (0 turns it off).",
    )

    # --- absolute limits (quotas per project) ------------------------------------------
    quota_instances: int = Field(default=10, description="maxTotalInstances per project.")
    quota_cores: int = Field(default=20, description="maxTotalCores (vCPUs) per project.")
    quota_ram_mb: int = Field(default=51200, description="maxTotalRAMSize (MB) per project.")
    quota_metadata_items: int = Field(
        default=128, description="maxServerMeta and maxImageMeta: metadata items per resource."
    )
    quota_personality: int = Field(default=5, description="maxPersonality: files per build.")
    quota_personality_size: int = Field(
        default=10240, description="maxPersonalitySize: bytes per personality file (decoded)."
    )
    quota_keypairs: int = Field(
        default=100, description="maxTotalKeypairs: key pairs per user (os-keypairs)."
    )
    quota_images: int = Field(
        default=100,
        description="Images a project may own through the image API (Glance's "
        "`image_count_total`); -1: unlimited.",
    )
    quota_image_bytes: int = Field(
        default=1 << 40,
        description="Bytes of image data a project may own (Glance's `image_size_total`; "
        "an upload past it is 413 and keeps nothing); -1: unlimited.",
    )
    image_purge_interval_s: float = Field(
        default=60.0,
        description="How often a gateway removes the data of deleted images that no live "
        "server was built from (0: never).",
    )
    image_upload_stale_after_s: float = Field(
        default=120.0,
        gt=0,
        description="An image upload (`saving`) its gateway has not marked alive for this "
        "long is put back to `queued` (its gateway died).",
    )

    # --- conductor ---------------------------------------------------------------------
    host_down_after_s: float = Field(
        default=30.0, description="A host whose last heartbeat is older than this is down."
    )
    cpu_allocation_ratio: float = 16.0
    ram_allocation_ratio: float = 1.5
    disk_allocation_ratio: float = 1.0
    reaper_interval_s: float = Field(
        default=10.0,
        description="How often each conductor looks for servers stuck in a task (0: never).",
    )
    task_deadline_s: float = Field(
        default=600.0,
        description="A task running longer than this is ended by the reaper: the server goes "
        "to ERROR with a fault (a delete is finished instead).",
    )
    task_deadlines: dict[str, float] = Field(
        default_factory=lambda: {
            "image_snapshot": 3600.0,
            "image_backup": 3600.0,
            "resize_migrating": 3600.0,
            "migrating": 3600.0,
        },
        description="Deadlines of particular tasks (task_state -> seconds), as JSON; "
        "the others have task_deadline_s.",
    )
    scheduler_host_subset_size: int = Field(
        default=3,
        description="The scheduler picks at random among this many best hosts, skipping any "
        "another decision is claiming at that moment, so that servers asked for together spread.",
    )

    # --- compute agent -----------------------------------------------------------------
    host: str = Field(default_factory=socket.gethostname, description="This agent's host name.")
    virt_driver: Literal["auto", "libvirt", "fake"] = Field(
        default="auto",
        description="`auto` uses libvirt when the binding is installed, else the fake driver.",
    )
    libvirt_uri: str = "test:///default"
    heartbeat_interval_s: float = 10.0
    agent_concurrency: int = Field(
        default=16, description="How many commands one agent runs at once (its prefetch)."
    )
    host_vcpus: int | None = Field(default=None, description="Override the vCPUs the host reports.")
    host_ram_mb: int | None = Field(default=None, description="Override the RAM the host reports.")
    host_disk_gb: int | None = Field(
        default=None, description="Override the disk the host reports."
    )
    simulate_agents: int = Field(
        default=0,
        ge=0,
        description="`stratus agent` runs this many simulated hosts (fake hypervisors, "
        "`<simulate_prefix>-0001` ...) instead of one real one; 0: one real host.",
    )
    simulate_prefix: str = Field(default="sim", description="Name prefix of the simulated hosts.")
    simulate_agents_per_connection: int = Field(
        default=200,
        ge=1,
        description="Simulated agents sharing one RabbitMQ connection (a channel each).",
    )

    # --- messaging ---------------------------------------------------------------------
    max_redeliveries: int = Field(
        default=5,
        description="A message whose handler fails this many times goes to the dead-letter queue.",
    )
    amqp_batch_max: int = Field(
        default=64,
        ge=1,
        description="Messages for one queue published while the last publish to it awaits "
        "its confirm go together in one AMQP message, at most this many; 1: each alone.",
    )
    # Checked where it is used (shared/sealing.py), not here: a validation error would print
    # the value, and only gateways and agents need it.
    message_key: SecretStr | None = Field(
        default=None,
        description="The key sealing admin passwords in messages (AES-256-GCM), urlsafe "
        "base64 of 32 bytes (`stratus message-key` makes one), the same on every gateway and "
        "agent; several, comma-separated, during a rotation (the first seals). Unset: "
        "`stratus up` makes one in its data directory.",
    )

    # --- logging -----------------------------------------------------------------------
    log_level: str = "INFO"
    log_json: bool = False

    # --- metrics and health checks (conductor, compute agent) --------------------------
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Where conductors and agents serve /metrics, /healthz and /readyz "
        "(the gateway serves them on its API listener).",
    )
    metrics_port: int = Field(
        default=9180, ge=0, le=65535, description="Port of that listener; 0 turns it off."
    )

    @property
    def instances_dir(self) -> Path:
        return self.data_dir / "instances"

    # --- rate limits (gateway) ---------------------------------------------------------
    rate_limits: str = Field(
        default=DEFAULT_RATE_LIMITS,
        description="Rate limits per user: `(VERB, URI, REGEX, VALUE, UNIT);...`; "
        "empty turns rate limiting off.",
    )

    # --- fixed addresses (conductor) ---------------------------------------------------
    networks: str = Field(
        default=DEFAULT_NETWORKS,
        description="Networks servers get a fixed address on: `label=cidr;...` "
        "(IPv4 and IPv6); empty gives servers no addresses.",
    )

    @field_validator(*_PARSED)
    @classmethod
    def _parses(cls, value: str, info: ValidationInfo) -> str:
        """Refuse a malformed setting of ``_PARSED`` at startup rather than at its first use
        (a request, a build)."""
        _PARSED[str(info.field_name)](value)
        return value

    # --- server actions (conductor, compute agent) -------------------------------------
    allow_resize_to_same_host: bool = Field(
        default=True,
        description="A resize may stay on the server's host (the only choice of a one-host "
        "setup); other hosts with room are still preferred.",
    )
    image_store_dir: Path | None = Field(
        default=None,
        description="Where image files (snapshots of servers) are written; unset: "
        "`<data_dir>/images`. Agents write it, so hosts share it in a distributed setup.",
    )

    image_s3_bucket: str | None = Field(
        default=None,
        description="(gateway) Keep the image store in this bucket of an S3-compatible "
        "object store (radosgw, MinIO, AWS; the operator creates it) instead of "
        "`STRATUS_IMAGE_STORE_DIR`: gateways then share no directory. Needs the `s3` extra "
        "(`pip install 'stratus[s3]'`).",
    )
    image_s3_endpoint: str | None = Field(
        default=None,
        description="(gateway) The object store's URL (`http://rgw:8080`); unset: AWS.",
    )
    image_s3_access_key: str | None = Field(
        default=None,
        description="(gateway) The object store's access key; unset (with the secret key): "
        "found as every AWS client finds it (environment, shared files, instance metadata).",
    )
    image_s3_secret_key: SecretStr | None = Field(
        default=None, description="(gateway) The object store's secret key."
    )
    image_s3_region: str | None = Field(
        default=None, description="(gateway) The object store's region, where it has any."
    )
    image_s3_part_size_mb: int = Field(
        default=8,
        ge=5,
        description="(gateway) The parts an upload goes to the object store in (S3 takes 5 "
        "MiB at least); each upload holds one part in memory.",
    )

    image_api_url: str | None = Field(
        default=None,
        description="(agent) The gateway agents download images from (its image API, "
        "`http://HOST:8774`): servers' disks are overlays on a copy kept on the host "
        "(`<data_dir>/_base`), and no host reads the image store. Unset: agents read "
        "images in place from the image store, which hosts must then share.",
    )
    image_cache_max_age_s: float = Field(
        default=86400.0,
        gt=0,
        description="(agent) A downloaded image no server of the host uses any more is "
        "removed after this long unused (nova's remove_unused_original_minimum_age_seconds).",
    )

    @property
    def image_cache_dir(self) -> Path:
        """Where an agent keeps the images it downloaded (nova's ``_base``)."""
        return self.data_dir / "_base"

    @property
    def image_store(self) -> Path:
        """The image store directory, ``image_store_dir`` or its default under ``data_dir``."""
        return self.image_store_dir or self.data_dir / "images"

    # --- policy (gateway) --------------------------------------------------------------
    policy: str = Field(
        default="",
        description="Who may do what: a JSON object of operation -> rule (`admin`, "
        "`admin_or_owner`, `nobody`), inline or the path of a file holding it; empty: the "
        "defaults of api_gateway/policy.py (nova 2013.1's).",
    )

    # --- live migration (compute agent) ------------------------------------------------
    live_migration_p2p: bool = Field(
        default=True,
        description="Live migrations are peer to peer (the source's libvirt reaches the "
        "destination's itself); false: the agent opens the destination's libvirt and "
        "drives the migration between the two (managed direct).",
    )

    # --- stratus up --------------------------------------------------------------------
    up_agents: int = Field(
        default=2,
        ge=1,
        description="Compute agents `stratus up` runs, hosts `<host>-1` ... `<host>-N` (just "
        "`<host>` for one), each on a hypervisor of its own.",
    )

    # --- Keystone authentication (gateway, STRATUS_AUTH_STRATEGY=keystone) ------------
    keystone_url: str | None = Field(
        default=None,
        description="Keystone's v3 identity endpoint, e.g. `http://127.0.0.1:5000/v3`.",
    )
    keystone_username: str | None = Field(
        default=None, description="The gateway's own (service) user in Keystone."
    )
    keystone_password: SecretStr | None = Field(
        default=None, description="The service user's password."
    )
    keystone_project: str | None = Field(
        default=None, description="The project the service user's token is scoped to."
    )
    keystone_domain: str = Field(
        default="Default",
        description="Domain (name) of the service user and of its project.",
    )
    keystone_timeout_s: float = Field(
        default=5.0, gt=0, description="How long one request to Keystone may take."
    )
    keystone_cache_entries: int = Field(
        default=10000, ge=1, description="Validated tokens each gateway keeps (LRU)."
    )
    keystone_revalidate_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a validated token is trusted before Keystone is asked again "
        "(so a revoked token stops working within this time); while Keystone cannot be "
        "reached, cached tokens are served until they expire.",
    )

    @model_validator(mode="after")
    def _keystone_complete(self) -> Settings:
        """A gateway told to use Keystone but not how to reach it stops at startup."""
        if self.auth_strategy == "keystone":
            missing = [
                f"STRATUS_{name.upper()}"
                for name in (
                    "keystone_url",
                    "keystone_username",
                    "keystone_password",
                    "keystone_project",
                )
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError("STRATUS_AUTH_STRATEGY=keystone needs " + ", ".join(missing))
        return self

    # --- real virtual machines (compute agent, libvirt on QEMU/KVM) -------------------
    libvirt_virt_type: Literal["auto", "kvm", "qemu"] = Field(
        default="auto",
        description="The domain type of servers on QEMU: `kvm` (hardware virtualization), "
        "`qemu` (emulation, TCG) or `auto` (kvm where the hypervisor reports a usable KVM, "
        "else qemu).",
    )
    libvirt_network: str = Field(
        default="",
        description="The libvirt network servers' NICs join; empty: QEMU's user-mode "
        "networking (no bridge needed, no inbound connections).",
    )
    libvirt_shutdown_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="How long a guest may take to shut down or reboot on an ACPI request "
        "(soft reboot, resize, os-stop) before it is powered off.",
    )
    libvirt_keepalive_s: int = Field(
        default=5,
        ge=0,
        description="How often an agent's connection to libvirtd checks that libvirtd "
        "answers (libvirt's keepalive; 0: never); after 5 unanswered checks the connection "
        "is taken for closed and the agent reconnects.",
    )
    libvirt_reconnect_max_s: float = Field(
        default=30.0,
        gt=0,
        description="The longest wait between two attempts of an agent to reconnect to "
        "libvirtd after its connection closed (libvirtd restarted): the waits double from "
        "0.5 s up to this.",
    )
    power_sync_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="How often an agent checks the power state of every server on its "
        "hypervisor and reports it (a safety net behind the hypervisor's lifecycle events, "
        "which are reported at once); 0 turns the check off.",
    )
    console_listen: str = Field(
        default="127.0.0.1",
        description="Where the displays (VNC, SPICE) of a libvirt host's guests listen; "
        "the gateways' console proxies must reach it.",
    )
    console_proxyclient_address: str | None = Field(
        default=None,
        description="The address console proxies reach this host's guests' displays at "
        "(nova's vncserver_proxyclient_address); unset: `console_listen` (loopback for a "
        "wildcard).",
    )

    # --- consoles (gateway; nova's os-consoles) ---------------------------------------
    console_token_ttl_s: float = Field(
        default=600.0,
        gt=0,
        description="How long a console URL's token may be used to open a console "
        "(nova's console_token_ttl).",
    )
    console_call_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="How long a gateway waits for a host to say where a guest's display "
        "listens before answering 503.",
    )
    novncproxy_base_url: str | None = Field(
        default=None,
        description="The noVNC page of novnc console URLs, as clients reach it; unset: the "
        "gateway's own `/consoles/novnc/vnc_auto.html`.",
    )
    xvpvncproxy_base_url: str | None = Field(
        default=None,
        description="The base of xvpvnc console URLs; unset: the gateway's own "
        "`/consoles/xvpvnc/console`.",
    )
    html5proxy_base_url: str | None = Field(
        default=None,
        description="The SPICE page of spice-html5 console URLs; unset: the gateway's own "
        "`/consoles/spice/spice_auto.html`.",
    )
    novnc_dir: Path = Field(
        default=Path("/usr/share/novnc"),
        description="noVNC's files (Debian's novnc package), served under /consoles/novnc/.",
    )
    spice_html5_dir: Path = Field(
        default=Path("/usr/share/spice-html5"),
        description="spice-html5's files (Debian's spice-html5 package), served under "
        "/consoles/spice/.",
    )

"""The server state model: vm_state, task_state, power_state and the v2 status derived from them.

A server has three independent states, as in the reference implementation: what it *is*
(``VmState``), what is being *done* to it (``TaskState``) and what the hypervisor *says*
(``PowerState``). The API's ``status`` is a pure function of the first two (``v2_status``).
Which action may start from which state, and which task each command to a host ends, live
in the tables below and nowhere else: the gateway uses them to answer 409, the agents to say
what their reports end, the conductor to refuse an illegal report.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class VmState(StrEnum):
    BUILDING = "building"
    ACTIVE = "active"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    STOPPED = "stopped"
    RESCUED = "rescued"
    RESIZED = "resized"
    SOFT_DELETED = "soft-delete"
    DELETED = "deleted"
    ERROR = "error"


class TaskState(StrEnum):
    SCHEDULING = "scheduling"
    SPAWNING = "spawning"
    REBOOTING = "rebooting"
    REBOOTING_HARD = "rebooting_hard"
    REBUILDING = "rebuilding"
    UPDATING_PASSWORD = "updating_password"
    RESIZE_PREP = "resize_prep"
    RESIZE_MIGRATING = "resize_migrating"
    RESIZE_MIGRATED = "resize_migrated"
    RESIZE_FINISH = "resize_finish"
    RESIZE_REVERTING = "resize_reverting"
    RESIZE_CONFIRMING = "resize_confirming"
    PAUSING = "pausing"
    UNPAUSING = "unpausing"
    SUSPENDING = "suspending"
    RESUMING = "resuming"
    MIGRATING = "migrating"
    IMAGE_SNAPSHOT = "image_snapshot"
    IMAGE_BACKUP = "image_backup"
    DELETING = "deleting"
    POWERING_OFF = "powering-off"
    POWERING_ON = "powering-on"


class PowerState(IntEnum):
    """Hypervisor power states, numbered as in the reference implementation."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


class Status(StrEnum):
    """The v2 API ``status`` of a server (guide 2.1.1)."""

    ACTIVE = "ACTIVE"
    BUILD = "BUILD"
    REBUILD = "REBUILD"
    REBOOT = "REBOOT"
    HARD_REBOOT = "HARD_REBOOT"
    PASSWORD = "PASSWORD"
    RESIZE = "RESIZE"
    VERIFY_RESIZE = "VERIFY_RESIZE"
    REVERT_RESIZE = "REVERT_RESIZE"
    PAUSED = "PAUSED"
    SUSPENDED = "SUSPENDED"
    SHUTOFF = "SHUTOFF"
    RESCUE = "RESCUE"
    MIGRATING = "MIGRATING"
    ERROR = "ERROR"
    DELETED = "DELETED"
    UNKNOWN = "UNKNOWN"


_DEFAULT_STATUS: dict[VmState, Status] = {
    VmState.ACTIVE: Status.ACTIVE,
    VmState.BUILDING: Status.BUILD,
    VmState.STOPPED: Status.SHUTOFF,
    VmState.RESIZED: Status.VERIFY_RESIZE,
    VmState.PAUSED: Status.PAUSED,
    VmState.SUSPENDED: Status.SUSPENDED,
    VmState.RESCUED: Status.RESCUE,
    VmState.ERROR: Status.ERROR,
    VmState.DELETED: Status.DELETED,
    VmState.SOFT_DELETED: Status.DELETED,
}

_TASK_OVERRIDES: dict[VmState, dict[TaskState, Status]] = {
    VmState.ACTIVE: {
        TaskState.REBOOTING: Status.REBOOT,
        TaskState.REBOOTING_HARD: Status.HARD_REBOOT,
        TaskState.UPDATING_PASSWORD: Status.PASSWORD,
        TaskState.REBUILDING: Status.REBUILD,
        TaskState.MIGRATING: Status.MIGRATING,
        TaskState.RESIZE_PREP: Status.RESIZE,
        TaskState.RESIZE_MIGRATING: Status.RESIZE,
        TaskState.RESIZE_MIGRATED: Status.RESIZE,
        TaskState.RESIZE_FINISH: Status.RESIZE,
        # a resize that failed on its destination is rolled back to the source while the
        # server is still active: guide 2.1.1 names that REVERT_RESIZE ("resize or migration
        # failed ...: the destination is cleaned up and the original restarted")
        TaskState.RESIZE_REVERTING: Status.REVERT_RESIZE,
    },
    VmState.STOPPED: {
        TaskState.REBOOTING: Status.REBOOT,
        TaskState.REBOOTING_HARD: Status.HARD_REBOOT,
        TaskState.REBUILDING: Status.REBUILD,
        TaskState.RESIZE_PREP: Status.RESIZE,
        TaskState.RESIZE_MIGRATING: Status.RESIZE,
        TaskState.RESIZE_MIGRATED: Status.RESIZE,
        TaskState.RESIZE_FINISH: Status.RESIZE,
    },
    VmState.ERROR: {
        TaskState.UPDATING_PASSWORD: Status.PASSWORD,
        # a rebuild out of ERROR shows REBUILD, not ERROR: clients polling for the end of
        # the rebuild would take ERROR for its failure (later nova's map does the same)
        TaskState.REBUILDING: Status.REBUILD,
    },
    VmState.RESIZED: {TaskState.RESIZE_REVERTING: Status.REVERT_RESIZE},
}


def v2_status(vm_state: str, task_state: str | None) -> Status:
    """The API status of a server in ``vm_state`` while ``task_state`` runs."""
    try:
        vm = VmState(vm_state)
    except ValueError:
        return Status.UNKNOWN
    if task_state is not None:
        override = _TASK_OVERRIDES.get(vm, {}).get(TaskState(task_state))
        if override is not None:
            return override
    return _DEFAULT_STATUS.get(vm, Status.UNKNOWN)


def vm_states_for_status(status: str) -> frozenset[VmState] | None:
    """The vm_states a ``status`` list filter selects; None when the status is not a default one.

    Only a status that some vm_state shows *by default* can be filtered on (``REBOOT`` is a
    transient override), exactly as the reference implementation did.
    """
    states = frozenset(vm for vm, st in _DEFAULT_STATUS.items() if st == status)
    return states or None


@dataclass(frozen=True)
class Transition:
    """An action that may start when the server is in one of ``from_vm`` with a task in
    ``from_task`` (None = no task running), and that sets ``task`` while it runs."""

    from_vm: frozenset[VmState]
    from_task: frozenset[TaskState | None]
    task: TaskState | None


_IDLE: frozenset[TaskState | None] = frozenset({None})
_ANY_TASK: frozenset[TaskState | None] = frozenset({None, *TaskState})

#: vm_states in which the hypervisor holds the server's domain (running or not).
_ON_A_HOST = frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED})

#: vm_states of a server that exists (not deleted).
_LIVE = frozenset(VmState) - {VmState.DELETED, VmState.SOFT_DELETED}

#: Actions a user may start, and the states they may start from (docs/architecture.md,
#: *State*). The keys are the names recorded in ``actions``; a reboot's two kinds set
#: different tasks, so each has its own entry.
ACTIONS: dict[str, Transition] = {
    "delete": Transition(frozenset(VmState) - {VmState.DELETED}, _ANY_TASK, TaskState.DELETING),
    # a failed password change may simply be sent again (ERROR -> PASSWORD -> ACTIVE)
    "changePassword": Transition(
        frozenset({VmState.ACTIVE, VmState.ERROR}), _IDLE, TaskState.UPDATING_PASSWORD
    ),
    "reboot": Transition(_ON_A_HOST, _IDLE, TaskState.REBOOTING),
    "reboot_hard": Transition(_ON_A_HOST, _IDLE, TaskState.REBOOTING_HARD),
    # from ERROR too: building the server again is the usual recovery (nova allowed it); a
    # server whose build never reached a host is still refused (check_on_a_host)
    "rebuild": Transition(
        frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR}), _IDLE, TaskState.REBUILDING
    ),
    # only a running server: a resize ends in VERIFY_RESIZE and then ACTIVE
    # (docs/architecture.md, *State*)
    "resize": Transition(frozenset({VmState.ACTIVE}), _IDLE, TaskState.RESIZE_PREP),
    "confirmResize": Transition(frozenset({VmState.RESIZED}), _IDLE, TaskState.RESIZE_CONFIRMING),
    "revertResize": Transition(frozenset({VmState.RESIZED}), _IDLE, TaskState.RESIZE_REVERTING),
    "createImage": Transition(_ON_A_HOST, _IDLE, TaskState.IMAGE_SNAPSHOT),
    # --- chapter 3, the admin actions (guide 3.1; nova 2013.1's preconditions) ---
    "pause": Transition(frozenset({VmState.ACTIVE, VmState.RESCUED}), _IDLE, TaskState.PAUSING),
    "unpause": Transition(frozenset({VmState.PAUSED}), _IDLE, TaskState.UNPAUSING),
    "suspend": Transition(
        frozenset({VmState.ACTIVE, VmState.RESCUED}), _IDLE, TaskState.SUSPENDING
    ),
    "resume": Transition(frozenset({VmState.SUSPENDED}), _IDLE, TaskState.RESUMING),
    # a resize to the same flavor on another host: like a resize, from a running server only
    # (its steps restart the server; nova also took SHUTOFF, which Stratus never reaches)
    "migrate": Transition(frozenset({VmState.ACTIVE}), _IDLE, TaskState.RESIZE_PREP),
    "createBackup": Transition(
        frozenset({VmState.ACTIVE, VmState.STOPPED}), _IDLE, TaskState.IMAGE_BACKUP
    ),
    # no task of their own: they may run beside any other and change no status (any
    # state); lock, unlock and os-resetState are done in the database at once
    "resetNetwork": Transition(_LIVE, _ANY_TASK, None),
    "injectNetworkInfo": Transition(_LIVE, _ANY_TASK, None),
    "lock": Transition(_LIVE, _ANY_TASK, None),
    "unlock": Transition(_LIVE, _ANY_TASK, None),
    "os-resetState": Transition(_LIVE, _ANY_TASK, None),
    # a running server with nothing else under way; it keeps running, MIGRATING
    # (guide 3.1 `os-migrateLive`)
    "os-migrateLive": Transition(frozenset({VmState.ACTIVE}), _IDLE, TaskState.MIGRATING),
    # nova's os-evacuate: a server whose host is gone is rebuilt from its image on another
    # (conductor/evacuate.py), under the task of a rebuild, whose report ends it; from the
    # states nova evacuated (ERROR too: what the reaper leaves of a task the dead host held)
    "evacuate": Transition(
        frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR}), _IDLE, TaskState.REBUILDING
    ),
    # nova's os-server-start-stop extension: stop (ACTIVE or ERROR -> SHUTOFF), start
    "os-stop": Transition(
        frozenset({VmState.ACTIVE, VmState.ERROR}), _IDLE, TaskState.POWERING_OFF
    ),
    "os-start": Transition(frozenset({VmState.STOPPED}), _IDLE, TaskState.POWERING_ON),
}


def allowed(action: str, vm_state: str, task_state: str | None) -> bool:
    """May ``action`` start on a server in ``vm_state`` running ``task_state``?"""
    transition = ACTIONS[action]
    try:
        vm = VmState(vm_state)
        task = TaskState(task_state) if task_state is not None else None
    except ValueError:
        return False
    return vm in transition.from_vm and task in transition.from_task


#: The commands a host runs for an action, by ``type`` on the bus (shared/messages.py), and
#: the task each ends: the host's report says it, learned from here, and the conductor
#: applies the report only while the server runs that task. Where a user's action sends the
#: command, it is the task that action set. None: the action runs beside any task.
COMMAND_TASKS: dict[str, TaskState | None] = {
    "spawn_server": TaskState.SPAWNING,
    "destroy_server": ACTIONS["delete"].task,
    "change_password": ACTIONS["changePassword"].task,
    "reboot_server": ACTIONS["reboot"].task,
    "rebuild_server": ACTIONS["rebuild"].task,
    "snapshot_server": ACTIONS["createImage"].task,
    # a resize's steps (conductor/resize.py): the conductor moves the task on at each
    "migrate_disk": TaskState.RESIZE_MIGRATING,
    "finish_resize": TaskState.RESIZE_FINISH,
    "confirm_resize": ACTIONS["confirmResize"].task,
    "revert_resize": ACTIONS["revertResize"].task,
    "finish_revert_resize": ACTIONS["revertResize"].task,
    "pause_server": ACTIONS["pause"].task,
    "unpause_server": ACTIONS["unpause"].task,
    "suspend_server": ACTIONS["suspend"].task,
    "resume_server": ACTIONS["resume"].task,
    "stop_server": ACTIONS["os-stop"].task,
    "start_server": ACTIONS["os-start"].task,
    "backup_server": ACTIONS["createBackup"].task,
    "inject_network_info": ACTIONS["injectNetworkInfo"].task,
    "reset_network": ACTIONS["resetNetwork"].task,
    # a live migration's steps (conductor/live_migration.py) all run under its one task
    "prepare_live_migration": ACTIONS["os-migrateLive"].task,
    "live_migrate": ACTIONS["os-migrateLive"].task,
    "finish_live_migration": ACTIONS["os-migrateLive"].task,
    "clean_up_live_migration": ACTIONS["os-migrateLive"].task,
    "recover_live_migration": ACTIONS["os-migrateLive"].task,
    "roll_back_live_migration": ACTIONS["os-migrateLive"].task,
}

#: A HARD reboot is the same command as a soft one, and ends the task of its own action.
_HARD_COMMAND_TASKS: dict[str, TaskState | None] = {"reboot_server": ACTIONS["reboot_hard"].task}


def task_ended_by(command: str, *, hard: bool = False) -> TaskState | None:
    """The task a command of type ``command`` ends (``hard``: a HARD reboot's); raises
    ``KeyError`` for a type no host runs."""
    if hard:
        return _HARD_COMMAND_TASKS[command]
    return COMMAND_TASKS[command]


def may_end(command: str, task: str | None) -> bool:
    """Is ``task`` the one a command of type ``command`` ends (or its HARD kind's)?"""
    if command not in COMMAND_TASKS:
        return False
    kinds = [COMMAND_TASKS[command]]
    if command in _HARD_COMMAND_TASKS:
        kinds.append(_HARD_COMMAND_TASKS[command])
    return task in kinds


@dataclass(frozen=True)
class Completion:
    """What a successful report of an agent's task does to the server.

    A failed run leaves the server in ERROR, unless ``failure_keeps_state``: then the task
    just ends, the server keeps its vm_state and the failure is recorded as a fault (the
    power actions, whose failure leaves the guest as it was; nova reverted their task too).
    """

    vm_state: VmState
    power_state: PowerState
    failure_keeps_state: bool = False


#: For each task an agent finishes in one step, the state a successful run leaves the server
#: in (a failed one leaves it in ERROR). A report for a task the server is not running is
#: refused by the conductor. Tasks of several steps, or whose outcome is not a fixed state
#: (a resize's, a snapshot's), are applied by their own conductor modules
#: (``STEPPED_TASKS``).
COMPLETIONS: dict[TaskState, Completion] = {
    TaskState.SPAWNING: Completion(VmState.ACTIVE, PowerState.RUNNING),
    TaskState.DELETING: Completion(VmState.DELETED, PowerState.NOSTATE),
    # a guest that cannot take the password (not running, no guest agent) is unchanged:
    # the failure is a fault, the server stays as it was (ACTIVE, or ERROR if it was)
    TaskState.UPDATING_PASSWORD: Completion(
        VmState.ACTIVE, PowerState.RUNNING, failure_keeps_state=True
    ),
    TaskState.REBOOTING: Completion(VmState.ACTIVE, PowerState.RUNNING),
    TaskState.REBOOTING_HARD: Completion(VmState.ACTIVE, PowerState.RUNNING),
    TaskState.REBUILDING: Completion(VmState.ACTIVE, PowerState.RUNNING),
    TaskState.PAUSING: Completion(VmState.PAUSED, PowerState.PAUSED, failure_keeps_state=True),
    TaskState.UNPAUSING: Completion(VmState.ACTIVE, PowerState.RUNNING, failure_keeps_state=True),
    TaskState.SUSPENDING: Completion(
        VmState.SUSPENDED, PowerState.SUSPENDED, failure_keeps_state=True
    ),
    TaskState.RESUMING: Completion(VmState.ACTIVE, PowerState.RUNNING, failure_keeps_state=True),
    TaskState.POWERING_OFF: Completion(
        VmState.STOPPED, PowerState.SHUTDOWN, failure_keeps_state=True
    ),
    TaskState.POWERING_ON: Completion(VmState.ACTIVE, PowerState.RUNNING, failure_keeps_state=True),
}

#: Tasks whose reports move the server through several steps (conductor/resize.py) or keep
#: its vm_state (conductor/snapshots.py, conductor/backups.py): they have no single completion.
STEPPED_TASKS: frozenset[TaskState] = frozenset(
    {
        TaskState.RESIZE_MIGRATING,
        TaskState.RESIZE_FINISH,
        TaskState.RESIZE_CONFIRMING,
        TaskState.RESIZE_REVERTING,
        TaskState.IMAGE_SNAPSHOT,
        TaskState.IMAGE_BACKUP,
        # a live migration's steps have reports of their own (conductor/live_migration.py)
        TaskState.MIGRATING,
    }
)


# --- power states reported by the hypervisor on its own --------------------------------------

#: The vm_state a server on a host takes when its hypervisor reports it in a power state that
#: the server did not reach through an action: a guest that shut itself down (or crashed) is
#: stopped, one its hypervisor paused is paused, and so on. The hypervisor is the truth:
#: Stratus never forces a guest back to what the database says (nova stopped a guest found
#: running while STOPPED; here it simply becomes ACTIVE again).
_POWER_VM_STATES: dict[PowerState, VmState] = {
    PowerState.RUNNING: VmState.ACTIVE,
    PowerState.PAUSED: VmState.PAUSED,
    PowerState.SUSPENDED: VmState.SUSPENDED,
    PowerState.SHUTDOWN: VmState.STOPPED,
    PowerState.CRASHED: VmState.STOPPED,
}


def vm_state_for_power(vm_state: VmState, power: PowerState) -> VmState:
    """The vm_state of an idle server in ``vm_state`` whose hypervisor reports ``power``.

    Only the states of a server whose domain its host holds follow the hypervisor (ACTIVE,
    STOPPED, PAUSED, SUSPENDED); any other (building, resized, error...) is kept, and so is
    every state when the hypervisor does not know the server (NOSTATE).
    """
    if vm_state not in _ON_A_HOST:
        return vm_state
    return _POWER_VM_STATES.get(power, vm_state)


# --- where a server's domain must be ---------------------------------------------------------

#: vm_states of a server running no task whose host must hold its domain: a host that lacks
#: it has lost the server (conductor/reconcile.py)
DOMAIN_HELD_VM_STATES: frozenset[VmState] = frozenset(
    {
        VmState.ACTIVE,
        VmState.PAUSED,
        VmState.SUSPENDED,
        VmState.STOPPED,
        VmState.RESCUED,
        VmState.RESIZED,
    }
)

#: tasks that work on the server's domain where it is, so its host must hold it meanwhile (a
#: build, rebuild, resize, migration or delete may rightly find none, or make one)
IN_PLACE_TASKS: frozenset[TaskState] = frozenset(
    {
        TaskState.REBOOTING,
        TaskState.REBOOTING_HARD,
        TaskState.UPDATING_PASSWORD,
        TaskState.PAUSING,
        TaskState.UNPAUSING,
        TaskState.SUSPENDING,
        TaskState.RESUMING,
        TaskState.IMAGE_SNAPSHOT,
        TaskState.IMAGE_BACKUP,
        TaskState.POWERING_OFF,
        TaskState.POWERING_ON,
    }
)

"""The agent's typed configuration: its settings' ``[agent]`` section and its slot in the
schedule file, both checked at start (ConfigError, exit 4, one line)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drsync.errors import ConfigError
from drsync.plan.fleet import clock_after
from drsync.settings import AgentJob, Settings

__all__ = ["AgentConfig", "Send", "TenantSlot", "agent_config", "tenant_slot"]


@dataclass(frozen=True)
class Send:
    """A planned send segment: ``mbit_per_s`` from ``from_s`` to ``to_s`` after the window
    opens."""

    from_s: float
    to_s: float
    mbit_per_s: float


@dataclass(frozen=True)
class TenantSlot:
    """The tenant's slot in tonight's schedule; offsets are seconds from the window start."""

    tenant: str
    window_start: str  # "HH:MM" or "HH:MM:SS", local time
    window_s: float
    start_s: float
    end_s: float
    deadline_s: float
    max_mbit_per_s: float
    sends: tuple[Send, ...]

    @property
    def planned_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def start_clock(self) -> str:
        return clock_after(self.window_start, self.start_s)

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "window_start": self.window_start,
                "window_s": self.window_s, "start": self.start_clock, "start_s": self.start_s,
                "end_s": self.end_s, "deadline_s": self.deadline_s,
                "planned_s": round(self.planned_s, 3), "max_mbit_per_s": self.max_mbit_per_s,
                "send": [{"from_s": s.from_s, "to_s": s.to_s, "mbit_per_s": s.mbit_per_s}
                         for s in self.sends]}


@dataclass(frozen=True)
class AgentConfig:
    tenant: str
    schedule: str
    jobs: tuple[AgentJob, ...]
    ship_wal: bool
    rpo_hours: float
    metrics_file: str | None
    settings: Settings
    wal_interval_s: float = 0.0  # with ship_wal: also ship this often outside the slot
    recompress_every_s: float = 0.0  # wal-recompress this often outside the slot (0: never)
    recompress_cpu_budget: float = 0.5  # a share of one core
    pitr: bool = True  # False: each night ships the WAL or a new base, whichever is smaller
    drill_every_days: float = 0.0  # after a slot: drill when the last one is older (0: off)


def agent_config(settings: Settings) -> AgentConfig:
    """The ``[agent]`` section, with what the daemon cannot run without."""
    where = f"config file {settings.source}" if settings.source else "the settings"
    if not settings.agent_tenant:
        raise ConfigError(f"{where}: [agent] tenant is required (the tenant's name in the "
                          "schedule)")
    if not settings.agent_schedule:
        raise ConfigError(f"{where}: [agent] schedule is required (a drsync-schedule file)")
    if not settings.agent_jobs and not settings.agent_ship_wal:
        raise ConfigError(f"{where}: the agent has nothing to do: add [[agent.job]] tables "
                          "or ship_wal = true")
    return AgentConfig(settings.agent_tenant, settings.agent_schedule, settings.agent_jobs,
                       settings.agent_ship_wal, float(settings.agent_rpo_hours),
                       settings.agent_metrics_file, settings,
                       float(settings.agent_wal_interval_s),
                       float(settings.agent_recompress_every_s),
                       _cpu_share(settings.agent_recompress_cpu_budget, where),
                       bool(settings.agent_pitr),
                       drill_every_days=float(settings.agent_drill_every_days))


def _cpu_share(value: float, where: str) -> float:
    if not 0 < value <= 1:
        raise ConfigError(f"{where}: [agent] recompress_cpu_budget = {value}: a share of one "
                          "core, above 0 and at most 1")
    return float(value)


def _fetch_schedule(config: AgentConfig) -> bytes:
    """An ``s3://bucket/key`` schedule, read with the config's own store settings
    (endpoint, credentials, CA bundle), as the planner's side published it."""
    from dataclasses import replace

    from drsync.errors import ObjectNotFound
    from drsync.settings import store_for

    prefix, _, name = config.schedule.removeprefix("s3://").rpartition("/")
    if not prefix or not name:
        raise ConfigError(f"{config.schedule}: [agent] schedule must be s3://bucket/key")
    store = store_for(replace(config.settings, repo=f"s3://{prefix}"))
    try:
        return store.get(name)
    except ObjectNotFound:
        raise ConfigError(f"{config.schedule}: schedule file not found") from None
    finally:
        store.close()


def tenant_slot(config: AgentConfig) -> TenantSlot:
    """The tenant's slot from the schedule file (format checked by ``load_schedule``)."""
    from drsync.plan.export import load_schedule, parse_schedule

    if config.schedule.startswith("s3://"):
        doc = parse_schedule(_fetch_schedule(config), config.schedule)
    elif "://" in config.schedule:
        raise ConfigError(f"{config.schedule}: [agent] schedule must be a path or "
                          "s3://bucket/key")
    else:
        doc = load_schedule(config.schedule)
    slot = doc["tenants"].get(config.tenant)
    if slot is None:
        why = ("it is listed as unscheduled (did not fit the window)"
               if config.tenant in doc["unscheduled"] else "it is not in the schedule")
        raise ConfigError(f"{config.schedule}: tenants: no slot for tenant "
                          f"{config.tenant!r}: {why}")
    window = doc["window"]
    return TenantSlot(
        tenant=config.tenant, window_start=window["start"], window_s=float(window["seconds"]),
        start_s=float(slot["start_s"]), end_s=float(slot["end_s"]),
        deadline_s=float(slot["deadline_s"]), max_mbit_per_s=float(slot["max_mbit_per_s"]),
        sends=tuple(Send(float(s["from_s"]), float(s["to_s"]), float(s["mbit_per_s"]))
                    for s in slot["send"]),
    )

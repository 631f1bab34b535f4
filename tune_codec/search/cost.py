"""What a search costs: each trial's device-hours, their price, and the budget after which a search launches
no new trials.

A trial's device-hours are the wall time from its start to its last report (model build, training,
validation, clips, checkpoints; not Ray's start-up or the gaps between trials) times the devices it holds:
its GPUs when it holds any, else its CPUs. Fractions count: two trials sharing a GPU (0.5 each) are
charged half an hour each per hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tune_codec.errors import UsageError

COST = "cost/device_hours"  # metric each trial reports every epoch: its device-hours so far
UNITS = ("h", "usd")  # --budget 2h: device-hours; --budget 5usd: dollars


@dataclass(frozen=True)
class Budget:
    text: str  # as given: 2h, 5usd
    hours: float  # device-hours


def held_devices(cpus: float, gpus: float) -> tuple[str, float]:
    """('GPU', gpus) when a trial holds GPUs, else ('CPU', cpus): what its device-hours count."""
    return ("GPU", gpus) if gpus > 0 else ("CPU", cpus)


def check_price(price: float | None) -> None:
    if price is not None and not (math.isfinite(price) and price > 0):
        raise UsageError(f"--price-per-gpu-hour {price:g} must be > 0")


def parse_budget(text: str, price: float | None) -> Budget:
    """'2h' (device-hours) or '5usd' (money, needs the price per device-hour); UsageError if neither."""
    unit = next((u for u in UNITS if text.lower().endswith(u)), None)
    try:
        value = float(text[: -len(unit)]) if unit else math.nan
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(
            f"--budget {text!r}: expected a positive amount of device-hours like 2h or of dollars like 5usd"
        )
    if unit == "usd" and price is None:
        raise UsageError(f"--budget {text}: a budget in dollars needs --price-per-gpu-hour")
    return Budget(text, value / price if unit == "usd" else value)


def dollars(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.2g}"


def describe_cost(hours: float, useful: int, trials: int, device: str, price: float | None) -> str:
    """One line: the total and the cost per useful trial, in device-hours and, given a price, dollars."""

    def amount(h: float) -> str:
        return f"{h:.3g} {device}-hours" + (f" ({dollars(h * price)})" if price is not None else "")

    per_useful = f"{amount(hours / useful)} per useful trial" if useful else "no useful trial"
    at = f" at {dollars(price)} per {device}-hour" if price is not None else ""
    return f"cost: {amount(hours)}{at} for {trials} trials; {per_useful} ({useful} of {trials})"


def describe_budget(budget: Budget, spent: float, launched: int, planned: int) -> str:
    """The budget line of a search's summary: whether it stopped the search early."""
    given = budget.text if budget.text.lower().endswith("h") else f"{budget.text} ({budget.hours:.3g} h)"
    if spent < budget.hours:
        return f"budget {given}: {spent:.3g} device-hours spent"
    return (
        f"budget {given} spent ({spent:.3g} device-hours): no new trials after {launched} of {planned}; "
        "the running ones finished"
    )

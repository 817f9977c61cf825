"""Pure pieces of the explorer's pages: parsing what a visitor typed, formatting chain values, drawing charts.

No I/O here: the reader (``reader.py``) gets values from the chain, these functions turn them into text and SVG.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from html import escape

from contracts import Reason

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
MAX_ROUND = 2**64 - 1  # rounds are uint64 on chain

# What each reason means, in words (contracts/outcomes.py, docs/architecture.md step 6).
REASON_TEXT = {
    Reason.NONE: "",
    Reason.MALFORMED: "records, shapes, dtypes or values not as specified",
    Reason.UNKNOWN_NODE: "the signer is not an approved node",
    Reason.BAD_SIGNATURE: "the signature does not verify for the claimed wallet",
    Reason.STALE: "not this round's round or global hash (a replay)",
    Reason.INTEGRITY: "the received arrays do not hash to the signed update hash",
    Reason.BAD_PROOF: "the EZKL proof does not verify",
    Reason.UNBOUND: "the proof's commitments are not the global / received slice",
    Reason.NO_IMPROVEMENT: "the proven loss did not go down",
    Reason.HARMFUL: "the update raises the loss on the aggregator's validation set (score below −τ)",
    Reason.NO_QUORUM: "too few verified replies for Krum: the round kept the global model",
    Reason.DUPLICATE: "the same (or within 5 % the same) update as another wallet's reply that arrived first: one "
                      "piece of work is paid once",
}


class BadInput(ValueError):
    """A visitor's input that cannot name anything (a round that is not a number, an address that is not one)."""


def parse_round(text: str) -> int:
    """A round number as typed in a URL: a non-negative integer that fits the contract's uint64."""
    text = text.strip()
    if not text.isdigit():
        raise BadInput(f"{text!r} is not a round number: rounds are whole numbers, e.g. /rounds/1")
    value = int(text)
    if value > MAX_ROUND:
        raise BadInput(f"round {text} is out of range (rounds are uint64 on chain)")
    return value


def parse_run(text: str | None) -> str | None:
    """A run id (or a prefix of one) as typed in a URL: 0x and up to 64 hex digits; None: the default run."""
    if text is None or not text.strip():
        return None
    text = text.strip().lower()
    if not re.fullmatch(r"0x[0-9a-f]{1,64}", text):
        raise BadInput(f"{text!r} is not a run id: 0x followed by hex digits (a prefix of the run's id is enough)")
    return text


def parse_address(text: str) -> str:
    """An Ethereum address as typed in a URL, checksummed; mixed case must be a valid checksum (EIP-55)."""
    from web3 import Web3

    text = text.strip()
    if not _ADDRESS.match(text):
        raise BadInput(f"{text!r} is not an address: expected 0x followed by 40 hex digits")
    if text[2:] != text[2:].lower() and text[2:] != text[2:].upper() and not Web3.is_checksum_address(text):
        raise BadInput(f"{text} has a wrong EIP-55 checksum (mixed case): a typo? Use all lower case to skip the check")
    return Web3.to_checksum_address(text)


def short(value: str | None, head: int = 6, tail: int = 4) -> str:
    """``0x1234…cdef``: enough of a hash or address to tell rows apart; the page keeps the full value on hover."""
    if not value:
        return "-"
    return value if len(value) <= head + tail + 1 else f"{value[:head]}…{value[-tail:]}"


def is_zero_hash(value: str | None) -> bool:
    return not value or set(value.removeprefix("0x")) <= {"0"}


def fmt_number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def fmt_time(timestamp: int | None) -> str:
    """A block timestamp in UTC; ``-`` for 0 (the contract's "not yet")."""
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_value(value: object) -> str:
    """A chain value of any ABI type as text: bytes as 0x hex (in lists and tuples too: an event's ``bytes32[]``),
    booleans as yes/no, the rest as is."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    return str(value)


WEI = 10**18  # ETH and the reward token (ZK0) both have 18 decimals
TOKEN = "ZK0"  # the registry's reward token, as zk0node rewards names it

# Event arguments that are amounts (everything else is a count, a round, an address or a hash).
EVENT_UNITS = {("Staked", "amount"): "ETH", ("Staked", "total"): "ETH", ("UnstakeRequested", "amount"): "ETH",
               ("StakeWithdrawn", "amount"): "ETH", ("Slashed", "amount"): "ETH", ("Slashed", "bounty"): "ETH",
               ("RewardClaimed", "amount"): TOKEN}


PARAMS = ("minStake", "emissionPerRound", "slashBps", "bountyBps", "unstakeDelay", "approvalRequired")


def amount_unit(name: str, event: str = "") -> str | None:
    """The unit of a named amount: ``ETH`` for stakes (and what slashing takes), ``ZK0`` for reward tokens, None for
    a value that is no amount (a round, a count, basis points). ``event``: the value is that event's argument."""
    if event:
        return EVENT_UNITS.get((event, name))
    key = re.sub(r"[^a-z]", "", name.lower())
    if key.endswith(("unlockat", "delay", "bps", "token", "required")):
        return None
    if "stake" in key or "burned" in key or "slashedwei" in key or key.endswith("bounty"):
        return "ETH"
    if "reward" in key or "emission" in key:
        return TOKEN
    return None


def fmt_tokens(units: object, unit: str) -> str:
    """An 18-decimal amount for people, as the CLIs show it: ``46.4697 ZK0``, ``1 ETH``, ``1,250.5 ZK0`` (four
    decimals at most, trailing zeros dropped; the exact units stay in the page's title attribute)."""
    if units is None:
        return "-"
    if isinstance(units, bool) or not isinstance(units, int):
        return fmt_value(units)
    if units and abs(units) < WEI // 10**4:  # below the fourth decimal: say so rather than print 0
        return f"{'-' if units < 0 else ''}<0.0001 {unit}"
    text = f"{Decimal(units) / WEI:,.4f}".rstrip("0").rstrip(".")
    return f"{text} {unit}"


def fmt_amount(value: object, name: str = "", event: str = "") -> str:
    """A value named ``name`` (a view, a client fact, an ``event``'s argument): in ETH or ZK0 when it is an amount,
    as text otherwise (a large integer with thousands separators, never in exponent notation)."""
    unit = amount_unit(name, event)
    if unit and isinstance(value, int) and not isinstance(value, bool):
        return fmt_tokens(value, unit)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**6:
        return f"{value:,}"
    return fmt_value(value)


def event_args(event: dict) -> list[dict]:
    """An event's arguments for the page: name, the text shown (amounts with their unit, hashes and addresses
    short, lists element by element) and the exact value for the title attribute."""
    out = []
    for name, value in event["args"].items():
        if event.get("event") == "ParamsChanged" and isinstance(value, list | tuple) and len(value) == len(PARAMS):
            value = dict(zip(PARAMS, value, strict=True))  # the Params struct, field by field
        exact = fmt_value(value)
        if isinstance(value, list | tuple):
            text = "[" + ", ".join(short(fmt_value(v)) if len(fmt_value(v)) > 20 else fmt_value(v) for v in value) + "]"
        elif isinstance(value, dict):
            text = ", ".join(f"{label(k)} {fmt_amount(v, k)}" for k, v in value.items())
            exact = ", ".join(f"{k}={fmt_value(v)}" for k, v in value.items())
        elif amount_unit(name, event.get("event", "")) and isinstance(value, int):
            text, exact = fmt_amount(value, name, event.get("event", "")), f"{value} (18 decimals)"
        else:
            text = short(exact) if len(exact) > 20 else exact
        out.append({"name": name, "text": text, "title": exact})
    return out


def reason_text(reason: Reason) -> str:
    return REASON_TEXT.get(reason, reason.name)


def label(name: str) -> str:
    """A contract function name for display: ``emissionPerRound`` → ``emission per round``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ")
    return words.lower() if not name.isupper() else name


# ----------------------------------------------------------------------------------------------- charts


def line_chart_svg(points: list[tuple[float, float]], title: str, y_label: str, *, percent: bool = False,
                   y_range: tuple[float, float] | None = None, width: int = 420, height: int = 220) -> str:
    """A small line chart of ``points`` (x, y) as inline SVG: no chart library, no script, nothing to download.

    Empty ``points`` give a chart that says so. ``percent`` labels the y axis 0-100 %; ``y_range`` fixes it.
    """
    left, right, top, bottom = 56, 14, 28, 36
    inner_w, inner_h = width - left - right, height - top - bottom
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>']
    points = [(float(x), float(y)) for x, y in points if y is not None and math.isfinite(y)]
    if not points:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="chart-empty">no data yet'
                     "</text></svg>")
        return "".join(parts)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = y_range if y_range else (min(ys), max(ys))
    if y_hi - y_lo < 1e-12:  # a flat line: give it room
        pad = abs(y_hi) * 0.1 or 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad
    elif not y_range:
        pad = (y_hi - y_lo) * 0.08
        y_lo, y_hi = y_lo - pad, y_hi + pad
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1

    def sx(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * inner_w

    def sy(y: float) -> float:
        return top + (y_hi - y) / (y_hi - y_lo) * inner_h

    def y_text(y: float) -> str:
        return f"{y:.0%}" if percent else f"{y:.3g}"

    parts.append(f'<rect x="{left}" y="{top}" width="{inner_w}" height="{inner_h}" class="chart-frame"/>')
    for i in range(5):  # horizontal grid lines with their values
        y = y_lo + (y_hi - y_lo) * i / 4
        parts.append(f'<line x1="{left}" x2="{left + inner_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" class="chart-grid"/>'
                     f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" class="chart-tick">{y_text(y)}'
                     "</text>")
    for x in sorted(set(xs)):  # rounds are whole numbers: one tick each
        parts.append(f'<text x="{sx(x):.1f}" y="{top + inner_h + 16}" text-anchor="middle" class="chart-tick">'
                     f"{x:g}</text>")
    parts.append(f'<text x="{left + inner_w / 2}" y="{height - 4}" text-anchor="middle" class="chart-axis">round'
                 f'</text><text x="12" y="{top + inner_h / 2}" text-anchor="middle" class="chart-axis" '
                 f'transform="rotate(-90 12 {top + inner_h / 2})">{escape(y_label)}</text>')
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    parts.append(f'<polyline points="{path}" class="chart-line"/>')
    for x, y in points:
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" class="chart-point">'
                     f"<title>round {x:g}: {y_text(y) if percent else f'{y:.4f}'}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)

"""What became of this node's replies, as the aggregator tells it: one log line per round.

The aggregator puts the outcome of a node's reply of round r into the next message it sends that node: round
r+1's train message, or, after the last round, a closing ``query`` message (``aggregator.protocol.notices`` says
why there). The values travel as JSON text under ``OUTCOMES_KEY`` in the message's config record: a list of
``{"round", "status", "reason", "detail", "score", "reward", "tx", "kept_global"}``, ``reward`` in reward-token
units (18 decimals; None when not known), ``tx`` the transaction that recorded it on chain (None: not sent yet or
no chain). They are the aggregator's word, not signed; the transaction lets the node check it on chain.
"""

from __future__ import annotations

import json

OUTCOMES_KEY = "zk0-outcomes"
ACCEPTED = ("SELECTED", "NOT_SELECTED")  # verified replies; any other status is the gate's rejection
TOKEN_UNITS = 10**18


def encode_outcomes(outcomes: list[dict]) -> str:
    """The config value that carries ``outcomes``."""
    return json.dumps(outcomes, separators=(",", ":"))


def decode_outcomes(config) -> list[dict]:
    """The outcomes a message's config carries (none: []). A value that is not what ``encode_outcomes`` writes
    is reported as one outcome that says so, never raised: it must not stop the node's round."""
    text = config.get(OUTCOMES_KEY) if config is not None else None
    if text is None:
        return []
    try:
        outcomes = json.loads(str(text))
        if isinstance(outcomes, list) and all(isinstance(o, dict) for o in outcomes):
            return outcomes
    except ValueError:
        pass
    return [{"round": "?", "status": "UNREADABLE", "detail": f"the aggregator sent {str(text)[:80]!r}"}]


def outcome_line(outcome: dict) -> str:
    """One line for the node's log, e.g. ``round 3: SELECTED, score +0.0700, reward 49.0000 ZK0, tx 0x…``."""
    status, reason = outcome.get("status", "?"), outcome.get("reason")
    if status in ACCEPTED:
        what = status if reason in (None, "", "NONE") else f"{status} ({reason})"
        if status == "NOT_SELECTED" and outcome.get("kept_global"):
            what += ": the round kept the global model"
    else:
        detail = str(outcome.get("detail") or "")
        what = f"REJECTED {status}" + (f" ({detail[:160]})" if detail else "")
    parts = [f"round {outcome.get('round', '?')}: {what}"]
    score = outcome.get("score")
    if isinstance(score, int | float):
        parts.append(f"score {score:+.4f}")
    elif status in ACCEPTED:
        parts.append("not scored (the aggregator has no validation set)")
    reward = outcome.get("reward")
    if isinstance(reward, int) and reward > 0:
        parts.append(f"reward {reward / TOKEN_UNITS:,.4f} ZK0")
    elif reward == 0:
        parts.append("no reward")
    tx = outcome.get("tx")
    if tx:
        parts.append(f"tx {tx}")
    elif outcome.get("chain"):
        parts.append("not on chain yet (the aggregator's journal sends it when the chain answers)")
    return ", ".join(parts)

"""The client x feature matrix: every conformance check records one cell,
and the session writes them all to conformance/MATRIX.md.

A check runs inside `matrix.cell(client, feature)`. A failure is recorded
with a one-line reason and fails the test at its end, unless the cell is a
known limitation (limitations.py): then it is recorded with the
limitation's reason and the test passes. A known limitation that starts
passing fails the test too, so the list never goes stale.
"""

from __future__ import annotations

import contextlib
import traceback
from dataclasses import dataclass
from pathlib import Path

from limitations import LIMITATIONS

MATRIX_PATH = Path(__file__).resolve().parent / "MATRIX.md"


@dataclass
class Cell:
    client: str
    feature: str
    status: str  # "pass" | "limitation" | "fail"
    note: str


def one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class Matrix:
    def __init__(self):
        self.cells: dict[tuple[str, str], Cell] = {}

    def record(self, client: str, feature: str, ok: bool, note: str = "") -> Cell:
        known = LIMITATIONS.get((client, feature))
        if ok and known:
            cell = Cell(client, feature, "fail", f"passes now: drop the limitation ({one_line(known)})")
        elif ok:
            cell = Cell(client, feature, "pass", one_line(note))
        elif known:
            cell = Cell(client, feature, "limitation", one_line(known))
        else:
            cell = Cell(client, feature, "fail", one_line(note))
        self.cells[(client, feature)] = cell
        return cell

    def write(self, path: Path = MATRIX_PATH) -> None:
        clients: dict[str, list[Cell]] = {}
        for cell in self.cells.values():
            clients.setdefault(cell.client, []).append(cell)
        out = [
            "# Client conformance matrix",
            "",
            "Written by the conformance suite (`conformance/`, run by `.ci/run`) against a freshly",
            "started gateway. Every cell is a real client or driver doing one thing; **limitation**",
            "cells name what Sluice's engine does not do (the reason is kept in",
            "`conformance/limitations.py`, and a limitation that starts passing fails the suite).",
            "",
            "| client | pass | limitation | fail |",
            "|---|---|---|---|",
        ]
        for client in sorted(clients):
            cells = clients[client]
            count = {s: sum(1 for c in cells if c.status == s) for s in ("pass", "limitation", "fail")}
            out.append(f"| {client} | {count['pass']} | {count['limitation']} | {count['fail']} |")
        for client in sorted(clients):
            out += ["", f"## {client}", "", "| feature | result | note |", "|---|---|---|"]
            for cell in sorted(clients[client], key=lambda c: c.feature):
                note = cell.note.replace("|", "\\|")
                out.append(f"| {cell.feature} | {cell.status} | {note} |")
        path.write_text("\n".join(out) + "\n")


class TestCells:
    """The cells one test records; fails the test at its end if any failed."""

    def __init__(self, matrix: Matrix):
        self.matrix = matrix
        self.failed: list[Cell] = []

    @contextlib.contextmanager
    def cell(self, client: str, feature: str, note: str = ""):
        detail = {"note": note}
        try:
            yield detail
        except Exception as e:  # noqa: BLE001 - every failure becomes a cell
            reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            cell = self.matrix.record(client, feature, False, reason)
            if cell.status == "fail":
                cell.trace = traceback.format_exc()
                self.failed.append(cell)
            return
        cell = self.matrix.record(client, feature, True, detail["note"])
        if cell.status == "fail":
            self.failed.append(cell)

    def record(self, client: str, feature: str, ok: bool, note: str = ""):
        cell = self.matrix.record(client, feature, ok, note)
        if cell.status == "fail":
            self.failed.append(cell)

    def check(self):
        if self.failed:
            lines = [f"{c.client} / {c.feature}: {c.note}" for c in self.failed]
            traces = "\n".join(getattr(c, "trace", "") for c in self.failed)
            raise AssertionError("failed cells:\n  " + "\n  ".join(lines) + "\n" + traces)

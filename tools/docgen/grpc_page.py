"""docs/reference/grpc.md: the gRPC services, messages and enums of proto/, with the comments the .proto files carry."""

from __future__ import annotations

import dataclasses
import re

from tools.docgen.common import ROOT, banner, cell, code, table

PROTO = ROOT / "proto"
OPEN = re.compile(r"^(service|message|enum|oneof)\s+(\w+)\s*\{$")
EMPTY = re.compile(r"^(message)\s+(\w+)\s*\{\s*\}$")
RPC = re.compile(r"^rpc\s+(\w+)\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(stream\s+)?([\w.]+)\s*\)")
FIELD = re.compile(r"^((?:optional|repeated)\s+)?(map\s*<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*(\d+)")
VALUE = re.compile(r"^(\w+)\s*=\s*(-?\d+)")


@dataclasses.dataclass
class Block:
    kind: str
    name: str
    doc: str
    entries: list[list[str]] = dataclasses.field(default_factory=list)
    children: list["Block"] = dataclasses.field(default_factory=list)


def parse(text: str) -> tuple[str, str, list[Block]]:
    """(package, the file's leading comment, its top-level blocks)."""
    package, header, pending, top = "", [], [], []
    stack: list[Block] = []
    seen_code = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("//"):
            pending.append(line[2:].strip())
            continue
        if not line:
            if not seen_code and pending:
                header, pending = header + pending, []
            pending = [] if seen_code else pending
            continue
        seen_code = True
        body, _, trailing = line.partition("//")
        body = body.strip()
        doc = " ".join(pending + ([trailing.strip()] if trailing.strip() else []))
        pending = []
        if body.startswith("syntax"):
            header = header or ([doc] if doc else [])
        elif body.startswith("package "):
            package = body[len("package "):].rstrip(";").strip()
        elif m := EMPTY.match(body):
            (stack[-1].children if stack else top).append(Block(m.group(1), m.group(2), doc))
        elif m := OPEN.match(body):
            block = Block(m.group(1), m.group(2), doc)
            (stack[-1].children if stack else top).append(block)
            stack.append(block)
        elif body == "}":
            if stack:
                stack.pop()
        elif stack and (m := RPC.match(body)):
            request = ("stream " if m.group(2) else "") + m.group(3)
            response = ("stream " if m.group(4) else "") + m.group(5)
            stack[-1].entries.append([m.group(1), request, response, doc])
        elif stack and stack[-1].kind == "enum" and (m := VALUE.match(body)):
            stack[-1].entries.append([m.group(1), m.group(2), doc])
        elif stack and (m := FIELD.match(body)):
            label = (m.group(1) or "").strip()
            stack[-1].entries.append([m.group(3), (label + " " if label else "") + " ".join(m.group(2).split()), m.group(4), doc])
    return package, " ".join(header), top


def _block(out: list[str], block: Block, prefix: str, level: int) -> None:
    name = prefix + block.name
    out.append(f"{'#' * level} {block.kind} `{name}`\n")
    if block.doc:
        out.append(cell(block.doc) + "\n")
    if block.kind == "service":
        out.append(table(["call", "request", "response", "what it does"], [[code(n), code(q), code(r), cell(d)] for n, q, r, d in block.entries]))
    elif block.kind == "enum":
        out.append(table(["value", "number", "meaning"], [[code(n), v, cell(d)] for n, v, d in block.entries]))
    else:
        rows = [[code(n), code(t), num, cell(d)] for n, t, num, d in block.entries]
        for child in block.children:
            if child.kind == "oneof":
                rows += [[code(n), code(t), num, cell(f"one of `{child.name}`. {d}".strip())] for n, t, num, d in child.entries]
        if rows:
            out.append(table(["field", "type", "number", "meaning"], rows))
        else:
            out.append("No fields.\n")
    for child in block.children:
        if child.kind != "oneof":
            _block(out, child, name + ".", level + 1)


def render() -> str:
    files = sorted(PROTO.rglob("*.proto"))
    out = [banner("the `.proto` files under `proto/` and their comments"), "# gRPC API\n",
           "The contracts every client and server share. Stubs for Python are generated into `ganworks/api/` by "
           "`make proto`; any other language generates its own from the same files. Every server also answers "
           "`grpc.health.v1.Health` and server reflection.\n"]
    for path in files:
        package, header, blocks = parse(path.read_text(encoding="utf-8"))
        out.append(f"## `{path.relative_to(ROOT)}` (package `{package}`)\n")
        if header:
            out.append(cell(header) + "\n")
        order = {"service": 0, "message": 1, "enum": 2}
        for block in sorted(blocks, key=lambda b: order.get(b.kind, 3)):
            _block(out, block, "", 3)
    return "\n".join(out)

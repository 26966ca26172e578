"""docs/reference/metrics.md: every evaluator metric from the registry — its definition and provenance (the module
docstring: paper and the implementation it matches), inputs, outputs, gauges and parameters with their bounds."""

from __future__ import annotations

import inspect
import sys

from tools.docgen.common import banner, cell, code, table


def render() -> str:
    from evaluator_service.metrics import METRICS

    out = [banner("the metric registry `evaluator_service/metrics/` (each metric's `METRIC` declaration and module docstring)"),
           "# Quality metrics\n",
           "What the evaluator can compute, in the report's order. Ask for them by name (`ganworks evaluate --metrics "
           "fid,kid`); set a parameter as `<metric>.<parameter>` (`--param kid.subset_size=500`). A value outside its "
           "range is refused with `INVALID_ARGUMENT` naming the range. Metrics marked *default* are in the server's "
           "default set. Gauges are exported as `ganworks_evaluator_<gauge>{run, extractor}` "
           "([Prometheus reference](prometheus.md)).\n"]
    out.append(table(["metric", "for runs of kind", "default", "outputs"],
                     [[f"[`{m.name}`](#{m.name.replace('_', '_')})", m.kind, "yes" if m.default else "", ", ".join(code(o) for o in m.outputs)] for m in METRICS.values()]))
    for m in METRICS.values():
        out.append(f"## {m.name}\n")
        out.append(cell(m.description) + "\n")
        module = sys.modules[m.fn.__module__]
        doc = inspect.getdoc(module) or ""
        if doc:
            out.append("\n".join("> " + line if line else ">" for line in doc.splitlines()) + "\n")
        out.append(f"*Source:* `{module.__name__.replace('.', '/')}.py`. *Inputs:* {', '.join(code(i) for i in m.inputs)}. "
                   f"*Kind:* {m.kind}.\n")
        gauges = ", ".join(f"{code(o)} → {code('ganworks_evaluator_' + g)}" for o, g in m.gauges.items())
        out.append(f"*Outputs:* {', '.join(code(o) for o in m.outputs)}." + (f" *Gauges:* {gauges}." if gauges else "") + "\n")
        if m.params:
            rows = [[code(f"{m.name}.{p.name}"), p.type.__name__, code("from the data" if p.default is None else p.default),
                     cell(p.range_text + ("; at most the number of samples" if p.at_most_samples else "")), cell(p.help)] for p in m.params]
            out.append(table(["parameter", "type", "default", "allowed", "meaning"], rows))
    return "\n".join(out)

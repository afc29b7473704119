"""The readable table printed after a run."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 0) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _met(r: dict[str, Any]) -> str:
    return "yes" if r.get("target_met") else "NO"


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    out = [
        f"machine: {m['nproc']} cores, {m['cpu_model']}, {m['mem_total_mb']:,} MB, Python {m['python']}"
        f"; database: {report['options']['database']}; quick: {report['options']['quick']}"
        f"; commit {m['git_commit'] or '?'}; load average at start {m['loadavg_at_start']}",
        "",
    ]
    rows = [["benchmark", "figure", "hub", "ceiling", "ratio", "target", "met"]]
    details: list[str] = []
    res = report["results"]
    if "ingest" in res:
        r = res["ingest"]
        if "error" in r:
            rows.append(["ingest", "CRASHED", "", "", "", "", r["error"][:60]])
        else:
            rows.append(
                [
                    "ingest",
                    "accepted (200)/s",
                    _f(r["accepted_per_s"]),
                    _f(r["ceiling_per_s"]),
                    _f(r["ratio_accepted"], 2),
                    "",
                    "",
                ]
            )
            rows.append(
                [
                    "",
                    "processed/s",
                    _f(r["processed_per_s"]),
                    _f(r["ceiling_per_s"]),
                    _f(r["ratio_processed"], 2),
                    ">= 0.50",
                    _met(r),
                ]
            )
            details.append(
                f"ingest: {r['webhooks']:,} webhooks, {r['concurrency']} clients; hub CPU "
                f"{r['hub_cpu_ms_per_webhook']:.2f} ms/webhook"
                + (
                    f"; bare handler {r['ceiling_cpu_ms_per_request']:.3f} ms/request"
                    if r.get("ceiling_cpu_ms_per_request") is not None
                    else ""
                )
            )
    if "latency" in res:
        r = res["latency"]
        if "error" in r:
            rows.append(["latency", "CRASHED", "", "", "", "", r["error"][:60]])
        else:
            fl = r["floor_at_top_rate"]
            for p in r["phases"]:
                top = p["rate"] == r["top_rate"]
                rows.append(
                    [
                        "latency" if p is r["phases"][0] else "",
                        f"p99 @ {p['rate']}/s (ms)",
                        _f(p["p99_ms"], 1),
                        _f(fl["p99_ms"], 1) if top else "",
                        "",
                        "< 50" if top else "",
                        _met(r) if top else "",
                    ]
                )
                details.append(
                    f"latency {p['rate']}/s: offered {p['offered_per_s']:.0f}/s, received {p['received']}/"
                    f"{p['messages']}, p50 {p['p50_ms']:.1f} p95 {p['p95_ms']:.1f} p99 {p['p99_ms']:.1f} "
                    f"max {p['max_ms']:.1f} ms; POST->200 p50 {p['http_to_200']['p50_ms']:.1f} p99 "
                    f"{p['http_to_200']['p99_ms']:.1f} ms; hub CPU {p['hub_cpu_s']:.1f} s"
                )
                if p.get("stages"):
                    details.append(
                        "  stages (the hub's histograms, p50/p99 ms): "
                        + "; ".join(
                            f"{name} {st['p50_ms']:.1f}/{st['p99_ms']:.1f}"
                            for name, st in p["stages"].items()
                            if st["count"]
                        )
                    )
            details.append(
                f"latency floor (bare handler POST->200 at {fl['rate']}/s): p50 {fl['p50_ms']:.1f} "
                f"p99 {fl['p99_ms']:.1f} max {fl['max_ms']:.1f} ms"
            )
    if "outbound" in res:
        r = res["outbound"]
        if "error" in r:
            rows.append(["outbound", "CRASHED", "", "", "", "", r["error"][:60]])
        else:
            held = r.get("held_to_target", "live")
            if "backlog_per_s" in r:
                rows.append(
                    [
                        "outbound",
                        "backlog delivered/s",
                        _f(r["backlog_per_s"]),
                        _f(r["ceiling_per_s"]),
                        _f(r["ratio"], 2),
                        ">= 0.80",
                        _met(r),
                    ]
                )
                rows.append(["", "send API accepted/s", _f(r["send_api_per_s"]), "", "", "", ""])
            rows.append(
                [
                    "outbound" if "backlog_per_s" not in r else "",
                    "live: provider sends/s",
                    _f(r["provider_per_s"]),
                    _f(r["ceiling_per_s"]),
                    _f(r["live_ratio"], 2),
                    ">= 0.80" if held == "live" else "",
                    _met(r) if held == "live" else "",
                ]
            )
            rows.append(["", "live: until all sent/s", _f(r["until_all_sent_per_s"]), "", "", "", ""])
            details.append(
                f"outbound: {r['sends']:,} sends a run, {r['provider_latency_ms']:.0f} ms provider latency, "
                f"concurrency {r['concurrency_budget']}; ceiling {r['ceiling_per_s']:.0f}/s at FakeGraph "
                f"(client {r['ceiling_client_per_s']:.0f}/s), uncapped; the channel's rate limit "
                f"({r['messages_per_second_setting']}/s) holds the hub below it"
            )
            if "backlog_per_s" in r:
                details.append(
                    f"outbound backlog: send API {r['send_api_per_s']:.0f}/s (p50 {r['send_api_p50_ms']:.1f} "
                    f"p99 {r['send_api_p99_ms']:.1f} ms, hub CPU {r['send_api_cpu_ms']:.2f} ms/send); "
                    f"delivered {r['backlog_per_s']:.0f}/s, "
                    f"hub CPU {r['backlog_cpu_ms_per_send']:.2f} ms/send"
                )
            details.append(
                f"outbound live: enqueue {r['enqueue_per_s']:.0f}/s, provider "
                f"{r['provider_per_s_after_enqueue']:.0f}/s after the enqueue ended "
                f"({r['calls_during_enqueue']} calls during it); all sent in {r['until_all_sent_s']:.1f} s; "
                f"hub CPU {r['hub_cpu_ms_per_send']:.2f} ms/send"
            )
    if "memory" in res:
        r = res["memory"]
        if "error" in r:
            rows.append(["memory", "CRASHED", "", "", "", "", r["error"][:60]])
        else:
            rows.append(
                [
                    "memory",
                    "RSS start/end/max MB",
                    f"{r['rss_start_mb']:.0f}/{r['rss_end_mb']:.0f}/{r['rss_max_mb']:.0f}",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            rows.append(
                ["", "slope MB/min (2nd half)", _f(r["slope_second_half_mb_per_min"], 2), "", "", "~0", ""]
            )
            details.append(
                f"memory: {r['webhooks']:,} webhooks in {r['seconds']} s ({r['accepted_per_s']:.0f}/s), "
                f"{r['processed']:,} processed, {r.get('refused_503', 0):,} refused with 503 "
                "(backlog bound); "
                f"slope over the whole load {r['slope_mb_per_min']:.2f} MB/min"
            )
    if "scale" in res:
        _scale(res["scale"], rows, details)
    out.append(_table(rows))
    if details:
        out += ["", *details]
    out.append(f"\ntotal {report['duration_s']} s")
    return "\n".join(out)


def _scale(r: dict[str, Any], rows: list[list[str]], details: list[str]) -> None:
    if "error" in r:
        rows.append(["scale", "CRASHED", "", "", "", "", r["error"][:60]])
        return
    first = True
    for name, st in r["setups"].items():
        if "skipped" in st:
            rows.append(["scale" if first else "", f"{name}: skipped", "", "", "", "", ""])
            details.append(f"scale {name}: {st['skipped']}")
            first = False
            continue
        rows.append(
            [
                "scale" if first else "",
                f"{name} processed/s",
                _f(st["processed_per_s"]),
                _f(st["ceiling_per_s"]),
                _f(st["ratio_processed"], 2),
                ">= 0.50",
                "yes" if st["ratio_processed"] >= 0.5 else "NO",
            ]
        )
        first = False
        details.append(
            f"scale {name}: accepted {st['accepted_per_s']:.0f}/s, "
            f"hub CPU {st['hub_cpu_ms_per_webhook']:.2f} "
            f"ms/webhook (all processes); ceiling: {st['processes']} bare aiohttp server(s), same client"
        )
        across = st.get("across_processes")
        if across:
            rows.append(
                [
                    "",
                    f"{name} POST A -> WS B p99 @ {across['rate']}/s (ms)",
                    _f(across["p99_ms"], 1),
                    _f(across["floor_p99_ms"], 1),
                    "",
                    "< 50",
                    "yes" if across["p99_ms"] < 50 and across["lost"] == 0 else "NO",
                ]
            )
            details.append(
                f"scale {name} across processes: {across['messages']} messages, lost {across['lost']}, "
                f"p50 {across['p50_ms']:.1f} p99 {across['p99_ms']:.1f} ms; "
                "floor = bare handler POST->200 p99"
            )
    if "two_over_one" in r:
        rows.append(["", "postgresql 2 / 1 processes", _f(r["two_over_one"], 2), "", "", ">= 1.6", _met(r)])

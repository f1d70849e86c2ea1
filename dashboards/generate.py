#!/usr/bin/env python3
"""Generates slawatch's Prometheus rules and Grafana dashboards.

The rule file and the four dashboards repeat the same shapes many times (seven compliance
windows, three aggregation levels, dozens of panels with the same datasource and layout rules),
so they are written from this one script instead of by hand: edit here, run
`python3 dashboards/generate.py`, commit the output. `tests/dashboards.rs` checks the output
(promtool, structure, metric names against a live daemon) and that it is what this script
writes (`generate.py OUT_DIR` writes to another folder for that comparison).
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else HERE

# ---------------------------------------------------------------------------------------------
# Prometheus rules
# ---------------------------------------------------------------------------------------------

WINDOWS = ["5m", "30m", "1h", "6h", "1d", "7d", "30d"]
# The burn-rate alert's objective. The desk promises every inquiry; 99 % is the share below
# which the trend itself is a problem to staff for (single late inquiries page through
# SlaBreached and the daemon's own alerts).
OBJECTIVE = 0.99
# Minimum decided inquiries in the last hour before a burn-rate page: at night 1 late of 2 is
# 50 %, a ratio that says nothing about the trend.
MIN_EVENTS_1H = 5
MIN_EVENTS_6H = 10

LEVELS = [
    ("job", "job"),
    ("channel", "job, channel"),
    ("channel_language", "job, channel, language"),
]


def decided(fn, w):
    """Deadlines decided in window `w` by outcome, revisions included: `fn` (`increase` or
    `rate`) of slawatch_deadlines_total, plus the revisions *to* an outcome, minus those *from*
    it. A revision series carries `from` and `to`, so `or` keeps it beside the deadline series
    of the same outcome and the sum adds them (an inquiry merged into another is withdrawn).
    Counters never go down: this is how Prometheus agrees with the reports, whose last word is
    the revised outcome."""
    return ("sum by (job, channel, language, outcome) (\n"
            f"  {fn}(slawatch_deadlines_total[{w}])\n"
            f"  or label_replace({fn}(slawatch_deadline_revisions_total{{to=~\"met|missed\"}}[{w}]), \"outcome\", \"$1\", \"to\", \"(.+)\")\n"
            f"  or -1 * label_replace({fn}(slawatch_deadline_revisions_total[{w}]), \"outcome\", \"$1\", \"from\", \"(.+)\")\n"
            ")")


def compliance_rules():
    rules = []
    for w in WINDOWS:
        rules.append({
            "record": f"channel_language_outcome:slawatch_deadlines:increase{w}",
            "expr": decided("increase", w),
        })
    for w in WINDOWS:
        for level, by in LEVELS:
            src = f"channel_language_outcome:slawatch_deadlines:increase{w}"
            rules.append({
                "record": f"{level}:slawatch_compliance:ratio{w}",
                "expr": f"sum by ({by}) ({src}{{outcome=\"met\"}})\n/\n"
                        f"sum by ({by}) ({src})",
            })
    return rules


SLO_WINDOWS = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]


def slo_rules():
    rules = []
    for w in SLO_WINDOWS:
        rules.append({
            "record": f"channel_language_outcome:slawatch_deadlines:rate{w}",
            "expr": decided("rate", w),
        })
    for w in SLO_WINDOWS:
        src = f"channel_language_outcome:slawatch_deadlines:rate{w}"
        rules.append({
            "record": f"slo:sli_error:ratio_rate{w}",
            "expr": f"sum by (job, channel) ({src}{{outcome=\"missed\"}})\n/\n"
                    f"sum by (job, channel) ({src})",
            "labels": {"slo": "first-response-15m"},
        })
    for w in ["1h", "6h"]:
        rules.append({
            "record": f"slo:sli_events:increase{w}",
            "expr": f"sum by (job, channel) (channel_language_outcome:slawatch_deadlines:increase{w})",
            "labels": {"slo": "first-response-15m"},
        })
    rules.append({
        "record": "slo:first_response_within_900s:ratio_rate1h",
        "expr": "sum by (job, channel) (rate(slawatch_first_response_seconds_bucket{le=~\"900(\\\\.0)?\"}[1h]))\n/\n"
                "sum by (job, channel) (rate(slawatch_first_response_seconds_count[1h]))",
        "labels": {"slo": "first-response-15m"},
    })
    rules.append({"record": "slo:objective:ratio", "expr": f"vector({OBJECTIVE})",
                  "labels": {"slo": "first-response-15m"}})
    return rules


# The 24/7 view: Prometheus has no "group by hour of day", so each evaluation stamps the
# current rates with the UTC hour and weekday as labels (count_values turns hour()'s value into
# a label whose sample is 1, and the join copies it). A series {hour="3"} then only has samples
# while it is 03:xx UTC, so avg_over_time over days is the mean rate at 3 a.m. and
# sum_over_time of met / total is the compliance of the 3 a.m. hour.
CLOCK = ('(count_values without () ("hour", hour())\n'
         ' * on () group_left (day_of_week) count_values without () ("day_of_week", day_of_week()))')


def coverage_rules():
    return [
        {
            "record": "channel_language_hour_day:slawatch_inquiries_received:rate5m",
            "expr": "sum by (job, channel, language) (rate(slawatch_inquiries_received_total[5m]))\n"
                    f"* on () group_left (hour, day_of_week)\n{CLOCK}",
        },
        {
            "record": "channel_language_outcome_hour_day:slawatch_deadlines:rate5m",
            "expr": "channel_language_outcome:slawatch_deadlines:rate5m\n"
                    f"* on () group_left (hour, day_of_week)\n{CLOCK}",
        },
    ]


def burn(short, long, factor):
    t = round(factor * (1 - OBJECTIVE), 6)
    return (f"(slo:sli_error:ratio_rate{short}{{slo=\"first-response-15m\"}} > {t}\n"
            f"   and slo:sli_error:ratio_rate{long}{{slo=\"first-response-15m\"}} > {t})")


def alert_rules():
    return [
        {
            "alert": "SlaBreachImminent",
            "expr": "sum by (job, channel, language) (slawatch_open_inquiries{state=\"warning\"}) > 0",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $value }} {{ $labels.language }} {{ $labels.channel }} inquiries past their warning time",
                "description": "Inquiries will miss the 15-minute promise unless answered now; see the wallboard.",
            },
        },
        {
            "alert": "SlaBreached",
            "expr": "sum by (job, channel, language) (slawatch_open_inquiries{state=\"breached\"}) > 0",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $value }} {{ $labels.language }} {{ $labels.channel }} inquiries open past their deadline",
                "description": "The promise is already missed for these; answer them and check staffing.",
            },
        },
        {
            "alert": "SlaComplianceBudgetBurn",
            "expr": f"(\n  {burn('5m', '1h', 14.4)}\n  or\n  {burn('30m', '6h', 6)}\n)\n"
                    f"and on (job, channel, slo) slo:sli_events:increase1h >= {MIN_EVENTS_1H}",
            "for": "2m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.channel }} first responses spend the error budget too fast",
                "description": f"Over {OBJECTIVE * 100:g} % must be answered in 15 minutes; the share missed is many times the budget in both a long and a short window.",
            },
        },
        {
            "alert": "SlaComplianceBudgetBurn",
            "expr": f"(\n  {burn('2h', '1d', 3)}\n  or\n  {burn('6h', '3d', 1)}\n)\n"
                    f"and on (job, channel, slo) slo:sli_events:increase6h >= {MIN_EVENTS_6H}",
            "for": "15m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.channel }} first responses slowly spend the error budget",
                "description": "Compliance is trending below the objective; review staffing by hour and language.",
            },
        },
        {
            "alert": "SlawatchDown",
            # up == 0: the target is known but does not answer; absent: no target at all (a
            # deleted service discovery entry must not silence the monitor).
            "expr": "up{job=\"slawatch\"} == 0 or absent(up{job=\"slawatch\"})",
            "for": "1m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "slawatch is not being scraped: nobody is watching the 15-minute promise",
                "description": "Deadlines pass unnoticed while the monitor is down; restart it or watch the mailbox by hand.",
            },
        },
        {
            "alert": "SlawatchNoActiveReplica",
            # A pair on PostgreSQL: every replica answers, none holds the leader lease (the
            # database is down or unreachable from both), so none reads, records or alerts.
            # A single daemon always reports 1.
            "expr": "max by (job) (slawatch_leader) == 0",
            "for": "1m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "no slawatch replica is active: nothing is read, recorded or alerted",
                "description": "Both replicas run but neither holds the leader lease; check PostgreSQL and the replicas' logs (/readyz says each one's role).",
            },
        },
        {
            "alert": "SlawatchSourceDown",
            "expr": "slawatch_source_up == 0",
            "for": "2m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "slawatch source {{ $labels.source }} cannot reach its mailbox or feed",
                "description": "Inquiries arriving through this source are not seen, so they cannot be alerted on.",
            },
        },
        {
            "alert": "SlawatchSourceStale",
            # IMAP IDLE reports a success at least every idle timeout (5 minutes by default).
            "expr": "time() - slawatch_source_last_success_timestamp_seconds > 600",
            "for": "1m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "slawatch source {{ $labels.source }} has not completed a sync for 10 minutes",
                "description": "New inquiries may be waiting unseen.",
            },
        },
        {
            "alert": "SlawatchNotifierDown",
            # The dispatcher falls back to another notifier, but the primary path is broken:
            # say so before the fallback fails too.
            "expr": "slawatch_notifier_up == 0",
            "for": "2m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "slawatch notifier {{ $labels.notifier }} failed its last delivery",
                "description": "Alerts go to the fallback notifier, if one is configured; fix the notifier's server or credentials.",
            },
        },
        {
            "alert": "SlawatchLedgerNotWritable",
            # slawatch pages this itself through its notifiers (monitor-ledger); this is the
            # second path, for when its notifiers are the problem too.
            "expr": "slawatch_ledger_writable == 0",
            "for": "1m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "slawatch cannot write its ledger",
                "description": "Alerts still go out, but nothing is recorded and sources are paused; check the disk and the daemon's log (/readyz says why).",
            },
        },
        {
            "alert": "SlawatchBlind",
            # Any of slawatch's own alerts (a source silent past silent_after, the ledger, a
            # notifier giving up), seen from Prometheus.
            "expr": "sum by (job, kind) (slawatch_monitor_alerts_active) > 0",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "slawatch is partly blind: {{ $labels.kind }}",
                "description": "slawatch paged about its own blindness through its notifiers; /readyz and the wallboard say what it cannot see.",
            },
        },
        {
            "alert": "SlawatchClockStepped",
            # Deadlines run on the monotonic clock, so a step harms no deadline; the offset says
            # slawatch's instants differ from the wall clock until its next restart.
            "expr": "increase(slawatch_clock_steps_total[1h]) > 0",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "The wall clock of slawatch's host stepped by more than 2 s",
                "description": "Check NTP on the host; slawatch keeps timing deadlines on its monotonic clock and takes the corrected clock at its next restart.",
            },
        },
        {
            "alert": "SlawatchAlertDeliveryFailing",
            "expr": "sum by (job, notifier, kind) (increase(slawatch_alerts_total{result=\"failed\"}[10m])) > 0",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "slawatch cannot deliver {{ $labels.kind }} alerts through {{ $labels.notifier }}",
                "description": "On-call managers may not be told about inquiries close to their deadline.",
            },
        },
    ]


def yaml_scalar(v):
    if isinstance(v, str) and "\n" in v:
        return None
    return json.dumps(v, ensure_ascii=False)


def dump_rule(r, out):
    first = True
    for k in ["record", "alert", "expr", "for", "labels", "annotations"]:
        if k not in r:
            continue
        prefix = "      - " if first else "        "
        first = False
        v = r[k]
        if isinstance(v, dict):
            out.append(f"{prefix}{k}:")
            for kk, vv in v.items():
                out.append(f"          {kk}: {yaml_scalar(vv)}")
        elif k == "expr":
            out.append(f"{prefix}{k}: |")
            for line in v.split("\n"):
                out.append(f"          {line}")
        else:
            out.append(f"{prefix}{k}: {yaml_scalar(v)}")


def write_rules():
    groups = [
        ("slawatch-compliance", "30s", compliance_rules() + slo_rules()),
        ("slawatch-coverage", "1m", coverage_rules()),
        ("slawatch-alerts", "30s", alert_rules()),
    ]
    out = ["# Generated by dashboards/generate.py: edit there, then rerun it.",
           "# Recording rules for compliance ratios, the SLO burn rates, the 24/7 coverage view and",
           "# the alerts on the 15-minute promise and on the monitor itself.",
           "groups:"]
    for name, interval, rules in groups:
        out.append(f"  - name: {name}")
        out.append(f"    interval: {interval}")
        out.append("    rules:")
        for r in rules:
            dump_rule(r, out)
    os.makedirs(os.path.join(OUT, "prometheus"), exist_ok=True)
    with open(os.path.join(OUT, "prometheus", "slawatch.rules.yml"), "w") as f:
        f.write("\n".join(out) + "\n")


# ---------------------------------------------------------------------------------------------
# Grafana dashboards
# ---------------------------------------------------------------------------------------------

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job", channel=~"$channel", language=~"$language"'
SEL_JC = 'job=~"$job", channel=~"$channel"'
SEL_J = 'job=~"$job"'


class Board:
    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)

    def newline(self):
        if self.x:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0


def target(expr, legend="", ref="A", instant=False, fmt=None):
    t = {"datasource": DS, "expr": expr, "refId": ref, "legendFormat": legend or "__auto"}
    if instant:
        t["instant"] = True
        t["range"] = False
    if fmt:
        t["format"] = fmt
    return t


def panel(kind, title, desc, targets, unit, **extra):
    p = {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    for k, v in extra.items():
        if k == "thresholds":
            p["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": v}
            p["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
        elif k == "minmax":
            p["fieldConfig"]["defaults"]["min"], p["fieldConfig"]["defaults"]["max"] = v
        elif k == "decimals":
            p["fieldConfig"]["defaults"]["decimals"] = v
        else:
            p[k] = v
    return p


def stat(title, desc, targets, unit, thresholds, big=True, **extra):
    p = panel("stat", title, desc, targets, unit, thresholds=thresholds, **extra)
    p["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background",
        "graphMode": "none",
        "justifyMode": "center",
        "textMode": "value_and_name",
        "orientation": "auto",
    }
    if big:
        # A wallboard is read from across the room: fixed large text, not auto-shrinking.
        p["options"]["text"] = {"titleSize": 28, "valueSize": 72}
    return p


def timeseries(title, desc, targets, unit, stack=False, **extra):
    p = panel("timeseries", title, desc, targets, unit, **extra)
    p["fieldConfig"]["defaults"]["custom"] = {
        "drawStyle": "line", "lineWidth": 2, "fillOpacity": 20 if stack else 0,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "spanNulls": True,
    }
    p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}}
    return p


def bars(title, desc, targets, unit, **extra):
    p = panel("barchart", title, desc, targets, unit, **extra)
    p["options"] = {"orientation": "vertical", "xField": "hour", "stacking": "normal",
                    "legend": {"displayMode": "list", "placement": "bottom"},
                    "showValue": "auto"}
    return p


def table(title, desc, targets, unit, **extra):
    p = panel("table", title, desc, targets, unit, **extra)
    p["options"] = {"showHeader": True, "cellHeight": "md"}
    return p


GOOD = [{"color": "red", "value": None}, {"color": "orange", "value": 0.95},
        {"color": "green", "value": 0.99}]
ZERO_GOOD = [{"color": "green", "value": None}, {"color": "red", "value": 1}]


def variables(with_lang=True, with_channel=True):
    v = [{
        "name": "datasource", "label": "Data source", "type": "datasource",
        "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
    }, {
        "name": "job", "label": "Job", "type": "query", "datasource": DS,
        "query": {"query": "label_values(slawatch_build_info, job)", "refId": "job"},
        "definition": "label_values(slawatch_build_info, job)",
        "refresh": 2, "includeAll": True, "multi": True, "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1,
    }]
    for name, label, metric in ([("channel", "Channel", "slawatch_inquiries_received_total")] if with_channel else []) + \
            ([("language", "Language", "slawatch_inquiries_received_total")] if with_lang else []):
        q = f'label_values({metric}{{job=~"$job"}}, {name})'
        v.append({
            "name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": q, "refId": name}, "definition": q,
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".+",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1,
        })
    return v


def dashboard(uid, title, desc, board, time_from="now-24h", refresh="30s", style="dark",
              lang=True, channel=True):
    return {
        "uid": uid,
        "title": title,
        "description": desc,
        "tags": ["slawatch"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "style": style,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "templating": {"list": variables(lang, channel)},
        "annotations": {"list": []},
        "links": [{"title": "slawatch dashboards", "type": "dashboards", "tags": ["slawatch"],
                   "asDropdown": True, "includeVars": True, "keepTime": True}],
        "panels": board.panels,
    }


def wallboard():
    b = Board()
    b.add(stat("Open, ok", "Open inquiries with more than the warning time left.",
               [target(f'sum(slawatch_open_inquiries{{{SEL}, state="ok"}})', "ok", instant=True)],
               "none", [{"color": "green", "value": None}]), 4, 6)
    b.add(stat("Open, warning", "Open inquiries past their warning time: answer these now.",
               [target(f'sum(slawatch_open_inquiries{{{SEL}, state="warning"}})', "warning", instant=True)],
               "none", [{"color": "green", "value": None}, {"color": "orange", "value": 1}]), 4, 6)
    b.add(stat("Open, breached", "Open inquiries already past their 15-minute deadline.",
               [target(f'sum(slawatch_open_inquiries{{{SEL}, state="breached"}})', "breached", instant=True)],
               "none", ZERO_GOOD), 4, 6)
    b.add(stat("Oldest waiting", "Age of the oldest open inquiry.",
               [target(f'max(slawatch_oldest_open_inquiry_age_seconds{{{SEL_JC}}})', "oldest", instant=True)],
               "s", [{"color": "green", "value": None}, {"color": "orange", "value": 600},
                     {"color": "red", "value": 900}]), 4, 6)
    b.add(stat("Next breach in", "Time until the earliest deadline of an open inquiry; empty when none is pending.",
               [target(f'min((slawatch_next_deadline_timestamp_seconds{{{SEL_JC}}} > 0) - time())', "next breach", instant=True)],
               "s", [{"color": "red", "value": None}, {"color": "orange", "value": 60},
                     {"color": "green", "value": 300}]), 4, 6)
    b.add(stat("Inquiries last hour", "Inquiries opened in the last hour.",
               [target(f'sum(increase(slawatch_inquiries_received_total{{{SEL}}}[1h]))', "last hour", instant=True)],
               "none", [{"color": "blue", "value": None}], decimals=0), 4, 6)
    b.newline()
    for w, label in [("1d", "today (24 h)"), ("7d", "7 days"), ("30d", "30 days")]:
        b.add(stat(f"In time, {label}",
                   f"Share of inquiries answered within 15 minutes over the last {label}, "
                   "counting unanswered ones the moment their deadline passed.",
                   [target(f'sum(channel_language_outcome:slawatch_deadlines:increase{w}{{{SEL}, outcome="met"}})\n'
                           f'/ sum(channel_language_outcome:slawatch_deadlines:increase{w}{{{SEL}}})',
                           label, instant=True)],
                   "percentunit", GOOD, decimals=1, minmax=(0, 1)), 8, 6)
    b.newline()
    b.add(timeseries("Inquiries per hour", "Inquiries opened, per hour, by channel and language.",
                     [target(f'sum by (channel, language) (rate(slawatch_inquiries_received_total{{{SEL}}}[$__rate_interval])) * 3600',
                             "{{channel}} {{language}}")],
                     "none", stack=True), 8, 8)
    b.add(timeseries("First response p50 / p90", "Time to first response of answered inquiries (15 minutes = 900 s).",
                     [target(f'histogram_quantile(0.5, sum by (le) (rate(slawatch_first_response_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p50"),
                      target(f'histogram_quantile(0.9, sum by (le) (rate(slawatch_first_response_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p90")],
                     "s", thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 900}]), 8, 8)
    b.add(table("Now, by channel and language", "Open inquiries per state and compliance today, per channel and language.",
                [target(f'sum by (channel, language, state) (slawatch_open_inquiries{{{SEL}}})', "", instant=True, fmt="table"),
                 target(f'channel_language:slawatch_compliance:ratio1d{{{SEL}}}', "", instant=True, fmt="table")],
                "none", transformations=[{"id": "merge", "options": {}}]), 8, 8)
    return dashboard("slawatch-wallboard", "slawatch / Wallboard",
                     "The state of the 15-minute promise at a glance, for a TV on the desk.", b,
                     time_from="now-12h", refresh="10s")


def compliance():
    b = Board()
    q_day = lambda by, flt="": (
        f'sum by ({by}) (channel_language_outcome:slawatch_deadlines:increase1d{{{SEL}, outcome="met"{flt}}})\n'
        f'/ sum by ({by}) (channel_language_outcome:slawatch_deadlines:increase1d{{{SEL}{flt}}})')
    b.add(timeseries("Daily compliance", "Share answered within 15 minutes over the preceding 24 h (one point per day).",
                     [target(q_day("job").replace("sum by (job)", "sum"), "all")],
                     "percentunit", interval="1d", minmax=(0, 1), thresholds=GOOD), 12, 8)
    b.add(timeseries("Daily breaches", "Inquiries that missed their deadline, per day.",
                     [target(f'sum by (channel, language) (channel_language_outcome:slawatch_deadlines:increase1d{{{SEL}, outcome="missed"}})',
                             "{{channel}} {{language}}")],
                     "none", stack=True, interval="1d", decimals=0), 12, 8)
    b.add(timeseries("Compliance by language (24 h)", "Share in time over a rolling day, per language.",
                     [target(f'sum by (language) (channel_language_outcome:slawatch_deadlines:increase1d{{{SEL}, outcome="met"}})\n'
                             f'/ sum by (language) (channel_language_outcome:slawatch_deadlines:increase1d{{{SEL}}})', "{{language}}")],
                     "percentunit", minmax=(0, 1)), 12, 8)
    b.add(timeseries("Compliance by channel (24 h)", "Share in time over a rolling day, per channel.",
                     [target(f'channel:slawatch_compliance:ratio1d{{{SEL_JC}}}', "{{channel}}")],
                     "percentunit", minmax=(0, 1)), 12, 8)
    b.add(table("Compliance by channel and language", "7-day and 30-day compliance and counts.",
                [target(f'channel_language:slawatch_compliance:ratio7d{{{SEL}}}', "", instant=True, fmt="table"),
                 target(f'channel_language:slawatch_compliance:ratio30d{{{SEL}}}', "", instant=True, fmt="table"),
                 target(f'sum by (channel, language) (channel_language_outcome:slawatch_deadlines:increase30d{{{SEL}, outcome="missed"}})', "", instant=True, fmt="table")],
                "percentunit", transformations=[{"id": "merge", "options": {}}]), 12, 8)
    hm = panel("heatmap", "First response time distribution",
               "Answered inquiries per first-response bucket over time (bucket 900 s is the deadline).",
               [target(f'sum by (le) (increase(slawatch_first_response_seconds_bucket{{{SEL}}}[$__rate_interval]))', "{{le}}", fmt="heatmap")],
               "s")
    hm["options"] = {"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1,
                     "color": {"mode": "scheme", "scheme": "Oranges"}}
    b.add(hm, 12, 8)
    b.add(timeseries("Exclusions by reason", "Inbound messages that were not inquiries, per hour, by reason.",
                     [target(f'sum by (reason) (rate(slawatch_inquiries_excluded_total{{{SEL_JC}}}[$__rate_interval])) * 3600', "{{reason}}")],
                     "none", stack=True), 12, 8)
    b.add(timeseries("Replies that answered nothing", "Desk messages that matched no inquiry, per hour, by reason.",
                     [target(f'sum by (reason) (rate(slawatch_replies_unmatched_total{{{SEL_J}}}[$__rate_interval])) * 3600', "{{reason}}")],
                     "none", stack=True), 12, 8)
    return dashboard("slawatch-compliance", "slawatch / Compliance",
                     "Daily compliance and breaches, by language and channel, with response times and exclusions.",
                     b, time_from="now-30d", refresh="5m")


def coverage():
    b = Board()
    r = "channel_language_hour_day:slawatch_inquiries_received:rate5m"
    d = "channel_language_outcome_hour_day:slawatch_deadlines:rate5m"
    note = " Hours and days are UTC (see the recording rules in dashboards/prometheus)."
    # Volume: mean rate while it was that hour, times 3600 = inquiries in a typical such hour.
    b.add(bars("Inquiries per hour of day", "Mean inquiries arriving in each hour of the day over the selected range, by language." + note,
               [target(f'sum by (hour, language) (avg_over_time({r}{{{SEL}}}[$__range])) * 3600', "{{language}}", instant=True, fmt="table")],
               "none", transformations=[{"id": "groupingToMatrix", "options": {"columnField": "language", "rowField": "hour", "valueField": "Value"}}]), 12, 9)
    b.add(bars("Compliance by hour of day", "Share answered within 15 minutes, per hour of the day and language: a staffing gap shows as a dip." + note,
               [target(f'sum by (hour, language) (sum_over_time({d}{{{SEL}, outcome="met"}}[$__range]))\n'
                       f'/ sum by (hour, language) (sum_over_time({d}{{{SEL}}}[$__range]))', "{{language}}", instant=True, fmt="table")],
               "percentunit", minmax=(0, 1), transformations=[{"id": "groupingToMatrix", "options": {"columnField": "language", "rowField": "hour", "valueField": "Value"}}]), 12, 9)
    byday = bars("Inquiries per day of week", "Mean inquiries per hour on each day of the week (0 = Sunday), by language." + note,
                 [target(f'sum by (day_of_week, language) (avg_over_time({r}{{{SEL}}}[$__range])) * 3600', "{{language}}", instant=True, fmt="table")],
                 "none", transformations=[{"id": "groupingToMatrix", "options": {"columnField": "language", "rowField": "day_of_week", "valueField": "Value"}}])
    byday["options"]["xField"] = "day_of_week"
    b.add(byday, 12, 9)
    cday = bars("Compliance by day of week", "Share answered within 15 minutes on each day of the week (0 = Sunday), by language." + note,
                [target(f'sum by (day_of_week, language) (sum_over_time({d}{{{SEL}, outcome="met"}}[$__range]))\n'
                        f'/ sum by (day_of_week, language) (sum_over_time({d}{{{SEL}}}[$__range]))', "{{language}}", instant=True, fmt="table")],
                "percentunit", minmax=(0, 1), transformations=[{"id": "groupingToMatrix", "options": {"columnField": "language", "rowField": "day_of_week", "valueField": "Value"}}])
    cday["options"]["xField"] = "day_of_week"
    b.add(cday, 12, 9)
    b.add(table("Weakest hours", "The hour-of-day × weekday × language cells with the most missed deadlines over the range." + note,
                [target(f'topk(20, sum by (day_of_week, hour, language, channel) (sum_over_time({d}{{{SEL}, outcome="missed"}}[$__range])) * 60 > 0)',
                        "", instant=True, fmt="table")],
                "none", decimals=0), 24, 9)
    return dashboard("slawatch-coverage", "slawatch / 24-7 coverage",
                     "Volume and compliance by hour of day and day of week, to find staffing gaps (3 a.m., Fridays, a language).",
                     b, time_from="now-30d", refresh="15m")


def health():
    b = Board()
    b.add(stat("slawatch up", "Whether Prometheus can scrape slawatch (1 = up).",
               [target(f'min(up{{{SEL_J}}})', "up", instant=True)], "bool_yes_no",
               [{"color": "red", "value": None}, {"color": "green", "value": 1}], big=False), 6, 5)
    b.add(stat("Sources up", "Sources reaching their mailbox or feed, out of all.",
               [target(f'sum(slawatch_source_up{{{SEL_J}}})', "up", instant=True),
                target(f'count(slawatch_source_up{{{SEL_J}}})', "configured", instant=True)], "none",
               [{"color": "blue", "value": None}], big=False), 6, 5)
    b.add(stat("Version", "Running slawatch version.",
               [target(f'count by (version) (slawatch_build_info{{{SEL_J}}})', "{{version}}", instant=True)], "none",
               [{"color": "blue", "value": None}], big=False), 6, 5)
    b.add(stat("Uptime", "Time since the slawatch process started.",
               [target(f'max(time() - process_start_time_seconds{{{SEL_J}}})', "uptime", instant=True)], "s",
               [{"color": "orange", "value": None}, {"color": "green", "value": 600}], big=False), 6, 5)
    b.add(timeseries("Source up", "1 when a source reaches its server or folder.",
                     [target(f'slawatch_source_up{{{SEL_J}}}', "{{source}}")], "bool_yes_no", minmax=(0, 1)), 8, 8)
    b.add(timeseries("Source lag", "Time since each source last completed a sync (IMAP IDLE renews at least every 5 minutes).",
                     [target(f'time() - (slawatch_source_last_success_timestamp_seconds{{{SEL_J}}} > 0)', "{{source}}")], "s",
                     thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 600}]), 8, 8)
    b.add(timeseries("Source errors", "Source errors per minute, by source and kind.",
                     [target(f'sum by (source, kind) (rate(slawatch_source_errors_total{{{SEL_J}}}[$__rate_interval])) * 60', "{{source}} {{kind}}")],
                     "none", stack=True), 8, 8)
    b.add(timeseries("Detection latency", "Time from the mail server's receipt to slawatch seeing the message (p50, p99).",
                     [target(f'histogram_quantile(0.5, sum by (le) (rate(slawatch_detection_latency_seconds_bucket{{{SEL_J}}}[$__rate_interval])))', "p50"),
                      target(f'histogram_quantile(0.99, sum by (le) (rate(slawatch_detection_latency_seconds_bucket{{{SEL_J}}}[$__rate_interval])))', "p99")],
                     "s"), 8, 8)
    b.add(timeseries("Alert delivery", "Alerts delivered and failed per hour, by notifier, kind and result.",
                     [target(f'sum by (notifier, kind, result) (rate(slawatch_alerts_total{{{SEL_J}}}[$__rate_interval])) * 3600', "{{notifier}} {{kind}} {{result}}")],
                     "none", stack=True), 8, 8)
    b.add(timeseries("Notifiers up", "1 when a notifier's last delivery attempt succeeded; 0 while it fails (the fallback takes over).",
                     [target(f'slawatch_notifier_up{{{SEL_J}}}', "{{notifier}}")], "bool_yes_no", minmax=(0, 1)), 8, 8)
    b.add(timeseries("Alert delivery latency", "From the alert's instant (warning time or deadline) to acceptance by the notifier's server (p50, p99); the target is under 1 s.",
                     [target(f'histogram_quantile(0.5, sum by (le, notifier) (rate(slawatch_alert_delivery_latency_seconds_bucket{{{SEL_J}}}[$__rate_interval])))', "p50 {{notifier}}"),
                      target(f'histogram_quantile(0.99, sum by (le, notifier) (rate(slawatch_alert_delivery_latency_seconds_bucket{{{SEL_J}}}[$__rate_interval])))', "p99 {{notifier}}")],
                     "s", thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]), 8, 8)
    b.add(timeseries("Ledger events", "Events appended to the ledger per minute.",
                     [target(f'sum(rate(slawatch_ledger_events_total{{{SEL_J}}}[$__rate_interval])) * 60', "events")],
                     "none"), 8, 8)
    b.add(timeseries("Process memory", "Resident memory of the slawatch process.",
                     [target(f'process_resident_memory_bytes{{{SEL_J}}}', "{{instance}}")], "bytes"), 8, 8)
    b.add(timeseries("Process CPU", "CPU time used per second.",
                     [target(f'rate(process_cpu_seconds_total{{{SEL_J}}}[$__rate_interval])', "{{instance}}")], "percentunit"), 8, 8)
    b.add(timeseries("Open file descriptors", "Open file descriptors against the limit.",
                     [target(f'process_open_fds{{{SEL_J}}}', "open {{instance}}"),
                      target(f'process_max_fds{{{SEL_J}}}', "max {{instance}}")], "none"), 8, 8)
    return dashboard("slawatch-health", "slawatch / Monitor health",
                     "Is the monitor itself healthy: sources, lag, errors, detection latency, alert delivery, process.",
                     b, time_from="now-6h", refresh="30s", lang=False, channel=False)


def write_dashboards():
    os.makedirs(os.path.join(OUT, "grafana"), exist_ok=True)
    for name, d in [("wallboard", wallboard()), ("compliance", compliance()),
                    ("coverage", coverage()), ("health", health())]:
        with open(os.path.join(OUT, "grafana", f"{name}.json"), "w") as f:
            json.dump(d, f, indent=2, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    write_rules()
    write_dashboards()

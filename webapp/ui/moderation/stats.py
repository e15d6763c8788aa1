"""The stats tab: flags and block rate per day, top rails and users, and how well each rail is doing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import gradio as gr
import pandas as pd

from webapp.moderation.guard_quality import thresholds_around
from webapp.services.moderation import RailWeek, ThresholdPoint
from webapp.ui.moderation.base import ModerationPageBase, Updates

STATS_RANGES = [("Last 7 days", 7), ("Last 30 days", 30), ("Last 90 days", 90), ("Last 365 days", 365)]
# The two per-day charts stand side by side: one x axis and one height, so their days line up.
PER_DAY_AXIS: dict[str, Any] = {"x": "day", "x_title": "Day (UTC)", "x_label_angle": -45, "height": 300}


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} % ({part}/{whole})" if whole else "— (none yet)"


def _quality_row(week: RailWeek) -> list[Any]:
    return [week.week.isoformat(), week.rail, week.flags, week.confirmed, week.dismissed,
            _rate(week.confirmed, week.confirmed + week.dismissed)]  # fmt: skip


def _threshold_row(rail: str, current: float, point: ThresholdPoint) -> list[Any]:
    marker = " (today)" if abs(point.threshold - current) < 1e-9 else ""
    return [rail, f"{point.threshold:.2f}{marker}", f"{point.caught} of {point.positives}", point.false_refusals,
            _rate(point.caught, point.caught + point.false_refusals), _rate(point.caught, point.positives)]  # fmt: skip


class StatsTab(ModerationPageBase):
    async def load_stats(self, days: Any, request: gr.Request) -> Updates:
        actor = await self._staff(request)
        span = days if isinstance(days, int) and 1 <= days <= 366 else 30
        until = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        stats = await self.ctx.moderation.stats(actor, since=until - timedelta(days=span), until=until)
        per_day = pd.DataFrame(
            [{"day": d.day.isoformat(), "rail": d.label, "flags": d.count} for d in stats.flags_per_day],
            columns=["day", "rail", "flags"],
        )
        rate = pd.DataFrame(
            [
                {"day": r.day.isoformat(), "block rate (%)": round(100 * r.rate, 2), "turns": r.turns}
                for r in stats.block_rate
            ],
            columns=["day", "block rate (%)", "turns"],
        )
        rails = pd.DataFrame(stats.top_rails, columns=["rail", "flags"])
        total_flags = sum(d.count for d in stats.flags_per_day)
        turns = sum(r.turns for r in stats.block_rate)
        blocked = sum(r.blocked for r in stats.block_rate)
        summary = (
            f"**{total_flags:,}** flags and **{turns:,}** replies in the last {span} days; "
            f"**{(100 * blocked / turns) if turns else 0:.1f}%** of replies were blocked."
        )
        since = until - timedelta(days=span)
        weeks = await self.ctx.moderation.rail_weeks(actor, since=since, until=until)
        settings = self.ctx.settings
        suggestions: list[tuple[str, float, ThresholdPoint]] = []
        for rail, current in (
            ("check request safety", settings.harmful_request_threshold),
            ("check reply safety", settings.harmful_reply_threshold),
        ):
            points = await self.ctx.moderation.threshold_points(
                actor, rail=rail, thresholds=thresholds_around(current), since=since, until=until
            )
            suggestions += [(rail, current, point) for point in points]
        precision = [
            {"week": w.week.isoformat(), "rail": w.rail, "precision (%)": round(100 * w.precision, 1)}
            for w in weeks
            if w.precision is not None
        ]
        return {
            self.stats_summary: summary,
            self.flags_plot: per_day,
            self.rate_plot: rate,
            self.rails_plot: rails,
            self.users_table: gr.update(value=[list(row) for row in stats.top_users]),
            self.quality_table: gr.update(value=[_quality_row(w) for w in weeks]),
            self.precision_plot: pd.DataFrame(precision, columns=["week", "rail", "precision (%)"]),
            self.thresholds_table: gr.update(value=[_threshold_row(*s) for s in suggestions]),
        }

    def _build_stats(self) -> None:
        with gr.Row():
            self.stats_days = gr.Dropdown(STATS_RANGES, value=30, label="Range", scale=0, min_width=180)
            self.stats_refresh = gr.Button(
                "Refresh", scale=0, min_width=100, elem_classes="gc-inline", elem_id="gc-mod-stats-refresh"
            )
            self.stats_summary = gr.Markdown(elem_id="gc-mod-stats-summary", elem_classes="gc-inline")
        with gr.Row():
            self.flags_plot = gr.BarPlot(
                **PER_DAY_AXIS,
                y="flags",
                color="rail",
                title="Flags per day by rail",
                y_title="Flags",
                elem_id="gc-mod-plot-flags",
            )
            self.rate_plot = gr.LinePlot(
                **PER_DAY_AXIS,
                y="block rate (%)",
                title="Block rate: blocked replies per day",
                y_axis_format=".1f",
                elem_id="gc-mod-plot-rate",
            )
        with gr.Row():
            self.rails_plot = gr.BarPlot(
                x="rail",
                y="flags",
                title="Top rails",
                sort="-y",
                x_label_angle=-20,
                height=280,
                elem_id="gc-mod-plot-rails",
            )
            self.users_table = gr.Dataframe(
                headers=["User", "Confirmed flags", "All flags"],
                type="array",
                interactive=False,
                label="Users with the most confirmed flags",
                elem_id="gc-mod-top-users",
            )
        gr.Markdown(
            "### Guard quality, from moderators' verdicts\nA confirmed block is a hit and a dismissed one a false "
            "refusal; a confirmed user report is a miss. Each rate shows the counts behind it."
        )
        with gr.Column():
            self.quality_table = gr.Dataframe(
                headers=["Week (Mon)", "Rail", "Flags", "Confirmed", "Dismissed", "Measured precision"],
                type="array",
                interactive=False,
                label="Per rail and week",
                elem_id="gc-mod-guard-quality",
            )
            self.precision_plot = gr.LinePlot(
                x="week",
                y="precision (%)",
                color="rail",
                title="Measured precision by rail and week",
                x_title="Week (UTC, Monday)",
                y_axis_format=".0f",
                height=300,
                elem_id="gc-mod-plot-precision",
            )
        self.thresholds_table = gr.Dataframe(
            headers=["Rail", "Threshold", "Caught", "False refusals", "Precision", "Recall"],
            type="array",
            interactive=False,
            label="What moderators' labels imply at thresholds around today's (a suggestion: thresholds stay settings)",
            elem_id="gc-mod-thresholds",
        )

"""The « taux de lapins », the figure Lapins exists to lower: no-shows ÷ rdvs held or missed (cancelled rdvs and
rdvs not yet recorded left out), over the last 30 days and per month over 24 months, beside the territory's rate
before Lapins (entered by its administrator) and the freed slots booked again."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from lapins.models import Territory
from lapins.stats.figures import (
    Filters, MonthFigures, Scope, add_months, count_rdvs, count_rebookings, monthly_figures,
)

WINDOW = timedelta(days=30)
MONTHS = 24


@dataclass(frozen=True)
class Headline:
    recent: MonthFigures  # the last 30 days (its `month` is the window's first day)
    months: list[MonthFigures]  # the last 24 months, the current one included
    baseline: float | None  # the territory's rate before Lapins, 0..1
    baseline_label: str | None

    @property
    def change(self) -> float | None:
        """The last 30 days' rate minus the baseline, in points of rate (negative: fewer no-shows)."""
        if self.baseline is None or self.recent.noshow_rate is None:
            return None
        return self.recent.noshow_rate - self.baseline


def headline(scope: Scope, territory: Territory, now: datetime) -> Headline:
    start = now - WINDOW
    recent = [MonthFigures(start.astimezone(scope.tz).date())]
    everything = Filters(first_month=recent[0].month.replace(day=1), last_month=recent[0].month.replace(day=1))
    count_rdvs(recent, scope, everything, [start, now])
    count_rebookings(recent, scope, everything, [start, now])
    this_month = now.astimezone(scope.tz).date().replace(day=1)
    months = monthly_figures(scope, Filters(first_month=add_months(this_month, -(MONTHS - 1)), last_month=this_month))
    baseline = territory.noshow_baseline_bp / 10000 if territory.noshow_baseline_bp is not None else None
    return Headline(recent=recent[0], months=months, baseline=baseline, baseline_label=territory.noshow_baseline_label)


def chart(result: Headline) -> dict[str, list]:
    """The DSFR line chart's series (in %): the monthly rate, and the baseline as a flat line when there is one."""
    labels = [f"{month.month:%m/%Y}" for month in result.months]
    rates = [None if month.noshow_rate is None else round(month.noshow_rate * 100, 1) for month in result.months]
    series = {"x": [labels], "y": [rates], "name": ["Taux de lapins"]}
    if result.baseline is not None:
        series["x"].append(labels)
        series["y"].append([round(result.baseline * 100, 1)] * len(labels))
        series["name"].append("Avant Lapins")
    return series


def format_points(rate_difference: float) -> str:
    """0.023 → « 2,3 points » (of percentage)."""
    value = f"{rate_difference * 100:.1f}".replace(".", ",")
    return f"{value}\u00a0point{'s' if rate_difference * 100 >= 2 else ''}"

"""The cabinets admin's own forms: the CSV import and a new rollout. The reason and
confirmation forms of operations are core.admin_confirm's."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from cabinets.models import (
    CabinetTag,
    RolloutKind,
)
from cabinets.rollouts.plans import DEFAULT_WAVE_PLAN, wave_plan_parse
from core.errors import ApplicationError


class CabinetImportForm(forms.Form):
    file = forms.FileField(label=_("File"), help_text=_("UTF-8 CSV with a header row."))
    dry_run = forms.BooleanField(
        required=False,
        label=_("Dry run"),
        help_text=_("Check the file and count what it would change; store nothing."),
    )


class RolloutCreateForm(forms.Form):
    name = forms.CharField(max_length=120, label=_("Name"))
    kind = forms.ChoiceField(choices=RolloutKind.choices, label=_("Kind"))
    version = forms.CharField(
        max_length=32,
        label=_("Version"),
        help_text=_("Firmware version (1.4.2) or config version (an integer)."),
    )
    payload = forms.JSONField(
        required=False,
        initial=dict,
        label=_("Payload"),
        help_text=_('Extra payload keys, e.g. {"url": "https://…", "sha256": "…"} for firmware.'),
    )
    target_region = forms.CharField(
        max_length=80, required=False, label=_("Target region"), help_text=_("Empty: all regions.")
    )
    target_tag = forms.ModelChoiceField(
        CabinetTag.objects.all(), required=False, label=_("Target tag")
    )
    target_hardware_model = forms.CharField(
        max_length=64, required=False, label=_("Target hardware model")
    )
    wave_plan = forms.CharField(
        initial=", ".join(DEFAULT_WAVE_PLAN),
        label=_("Wave plan"),
        help_text=_("Cumulative: a count (5 pilots) or a share of the targets (10%)."),
    )
    success_threshold_pct = forms.IntegerField(
        min_value=0, max_value=100, initial=95, label=_("Success threshold pct")
    )
    error_threshold_pct = forms.IntegerField(
        min_value=0, max_value=100, initial=20, label=_("Error threshold pct")
    )
    min_sample = forms.IntegerField(min_value=1, initial=5, label=_("Min sample"))
    command_ttl_s = forms.IntegerField(
        min_value=60, max_value=86_400, initial=3600, label=_("Command ttl s")
    )

    def clean_wave_plan(self) -> list[str]:
        try:
            return wave_plan_parse(self.cleaned_data["wave_plan"])
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean_payload(self) -> dict[str, Any]:
        payload = self.cleaned_data["payload"] or {}
        if not isinstance(payload, dict):
            raise forms.ValidationError("The payload is a JSON object.")
        return payload

"""The one date and time format of the platform (FORMAT_MODULE_PATH), the same in every
language: times read "2026-12-02 21:38:20 +0800", in TIME_ZONE (core/timefmt.py)."""

DATETIME_FORMAT = "Y-m-d H:i:s O"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = DATE_FORMAT
TIME_FORMAT = "H:i:s"

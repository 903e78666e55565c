"""ALS-specific content, as data where it is numbers.

* :mod:`.library` -- the intervention library (``interventions.toml``: tocilizumab,
  low-dose IL-2, Treg infusions, masitinib, ...), built against the model's own parameters;
* :mod:`.defaults` -- what the generic virtual layer uses for an ALS model (``defaults.toml``:
  between-subject variability of the §5 virtual cohort, scenario endpoints, the ALSFRS-R
  scale of virtual trials);
* :mod:`.describe` -- a cohort against the published ALS statistics (``targets.toml``);
* :mod:`.synthetic`, :mod:`.cohort_config` -- the ALS synthetic-cohort generator (onset,
  diagnosis, enrolment on ALSFRS-R and ΔFS, dropout driven by ALSFRS-R loss) and its
  population config (``configs/cohorts/*.toml``), built on the generic steps of
  :mod:`progression.virtual.synthesis`.

The generic layers (:mod:`progression.virtual`, :mod:`progression.data`) know nothing of ALS;
this package sits above them and may import them.
"""

_PUBLISHED = ("published_trial", "published_trials", "check_published", "format_checks")


def __getattr__(name):
    # published trials (trials.toml) on first use: `progression.als.published_trial("mirocals")`
    if name in _PUBLISHED:
        from . import published

        return getattr(published, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""End events in the population VPC (``[estimator] vpc_end_events``) against closed forms.

``tests/models/decay_death.toml``: x = x0 exp(-k t) with the terminal event ``death`` where x
falls to xd, at T = ln(x0 / xd) / k, and the hazard ``lost`` with constant rate h, at
T = -log(0.5 erfc(z / sqrt 2)) / h for the subject's score z. With the time offset fixed at 2
(model time = data time + 2) a subject is enrolled alive only if T > 2.

- :class:`EndEvents` marks exactly the observations at or after each row's event time, and
  which rows are event-free at their first observation (both events, scores drawn per row);
- :func:`vpc` with ``ended`` takes each replicate's percentiles over its existing values;
- through a FOCE-I fit and :func:`population_outputs`, the share of simulated values lost to
  death in each VPC bin equals the closed-form probability under the fitted log-normal k,
  conditional on being alive at entry, P(T <= t + 2 | T > 2), within Monte Carlo error, and
  none is lost at the first observation.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erfc
from scipy.stats import norm

from progression.errors import ConfigError
from progression.fit import Design, Problem, parse_fit_config
from progression.fit.population._vpc import vpc
from progression.fit.population._vpc_events import EndEvents

MODELS = Path(__file__).parent / "models"
TIMES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
OFFSET = 2.0
X0, XD = 2.0, 0.5
#: the population of the simulated data: log k ~ N(log 0.5, 0.1)
K_TYPICAL, OMEGA = 0.5, 0.1


def _config(tmp_path, extra: str = 'vpc_end_events = ["death"]', model_text=None):
    if model_text is None:
        shutil.copy(MODELS / "decay_death.toml", tmp_path / "decay_death.toml")
    else:
        (tmp_path / "decay_death.toml").write_text(model_text)
    text = f"""
[fit]
model = "decay_death.toml"
estimator = "focei"
[data]
path = "decay_death.toml"
[error.log_x]
model = "additive"
a = 0.05
[parameters.k]
estimate = "population"
value = 0.5
bounds = [0.01, 5.0]
scale = "log"
eta = 0.1
[parameters.time_offset]
estimate = "fixed"
value = {OFFSET}
[solver]
rtol = 1e-10
atol = 1e-12
[estimator]
seed = 3
npde_samples = 200
{extra}
"""
    return parse_fit_config(text, base_dir=tmp_path, name="decay_death",
                            source=str(tmp_path / "decay_death_fit.toml"))


def _designs(ks):
    """Subjects observed (log x, error-free) at TIMES while alive."""
    out = []
    for i, k in enumerate(ks):
        alive = TIMES + OFFSET < math.log(X0 / XD) / k
        t = TIMES[alive]
        out.append(Design(f"S{i + 1}", t, np.zeros(t.size, int), math.log(X0) - k * (t + OFFSET),
                          np.zeros(t.size, int), np.full(t.size, np.nan)))
    return out


def _rows(problem, ks, h=0.0):
    th = np.repeat(problem.values[None], len(ks), axis=0)
    th[:, problem.names.index("k")] = ks
    th[:, problem.model.parameter_names.index("h")] = h
    return th


def test_end_events_mark_observations_from_the_closed_form_death_time(tmp_path):
    cfg = _config(tmp_path)
    designs = [d.replace(time=TIMES, obs=np.zeros(TIMES.size, int),
                         value=np.zeros(TIMES.size), cens=np.zeros(TIMES.size, int),
                         limit=np.full(TIMES.size, np.nan)) for d in _designs([0.3, 0.3, 0.3])]
    problem = Problem.from_config(cfg)
    ks = np.array([0.3, 0.45, 0.6, 0.8])   # T = 4.62, 3.08, 2.31, 1.73 (model time)
    end = EndEvents(problem, designs, ["death"])
    drawn = end.draw(_rows(problem, ks), np.array([0, 1, 2, 0]), np.random.default_rng(1))
    T = math.log(X0 / XD) / ks
    np.testing.assert_array_equal(drawn.ended, TIMES[None] + OFFSET >= T[:, None])
    np.testing.assert_array_equal(drawn.alive_at_entry, T > OFFSET)


def test_hazard_events_use_a_score_drawn_per_row(tmp_path):
    cfg = _config(tmp_path)
    designs = [d.replace(time=TIMES, obs=np.zeros(TIMES.size, int),
                         value=np.zeros(TIMES.size), cens=np.zeros(TIMES.size, int),
                         limit=np.full(TIMES.size, np.nan)) for d in _designs([0.1])]
    problem = Problem.from_config(cfg)
    R, h = 40, 0.4
    end = EndEvents(problem, designs, ["lost"])
    assert end.scores == ("z_lost",)
    ks = np.full(R, 0.01)                     # death far beyond the observations
    drawn = end.draw(_rows(problem, ks, h=h), np.zeros(R, int), np.random.default_rng(7))
    z = np.random.default_rng(7).standard_normal(R)
    T = -np.log(0.5 * erfc(z / math.sqrt(2.0))) / h
    far = np.min(np.abs(TIMES[None] + OFFSET - T[:, None]), axis=1) > 1e-6
    assert far.sum() > 35
    np.testing.assert_array_equal(drawn.ended[far], (TIMES[None] + OFFSET >= T[:, None])[far])
    np.testing.assert_array_equal(drawn.alive_at_entry, T > OFFSET)
    # both events: the first one ends the observations
    both = EndEvents(problem, designs, ["death", "lost"])
    ks = np.full(R, 0.6)                      # death at 2.31
    drawn = both.draw(_rows(problem, ks, h=h), np.zeros(R, int), np.random.default_rng(7))
    first = np.minimum(T, math.log(X0 / XD) / 0.6)
    np.testing.assert_array_equal(drawn.ended[far], (TIMES[None] + OFFSET >= first[:, None])[far])


def test_vpc_percentiles_use_the_values_that_exist():
    rng = np.random.default_rng(0)
    t = np.repeat([0.0, 1.0], 50)
    y = rng.standard_normal(100)
    sims = rng.standard_normal((30, 100))
    ended = rng.random((30, 100)) < 0.3
    ended[:, t == 0] = False
    res = vpc(t, y, np.where(ended, np.nan, sims), n_bins=2, edges=[0.0, 0.5, 1.0],
              ended=ended)
    m = t == 1
    med = [np.percentile(sims[r, m][~ended[r, m]], 50) for r in range(30)]
    np.testing.assert_allclose(res.sim_median[1, 1], np.median(med), rtol=1e-12)
    np.testing.assert_allclose(res.sim_ended, [0.0, ended[:, m].mean()], rtol=1e-12)
    # NaN that no end event explains is still a broken simulation
    with pytest.raises(Exception, match="expected finite simulated values"):
        vpc(t, y, np.where(ended, np.nan, sims), n_bins=2, edges=[0.0, 0.5, 1.0])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from progression.fit.estimate import fit

    tmp = tmp_path_factory.mktemp("vpc_end")
    rng = np.random.default_rng(11)
    ks = []
    while len(ks) < 40:                        # enrolled alive at entry, as the VPC assumes
        k = K_TYPICAL * math.exp(math.sqrt(OMEGA) * rng.standard_normal())
        if math.log(X0 / XD) / k > OFFSET + 1e-3:
            ks.append(k)
    return fit(_config(tmp), data=_designs(ks))


def test_share_lost_to_death_is_the_conditional_closed_form(fitted):
    from progression.fit.population._outputs import population_outputs, vpc_report_lines

    out = population_outputs(fitted)
    v = out.vpcs["log_x"]
    mu = math.log(fitted.population.fixed_effects["k"])
    sd = math.sqrt(float(np.asarray(fitted.population.omega)[0, 0]))
    c = math.log(X0 / XD)

    def dead_by(s):                            # P(T <= s) = P(k >= c / s)
        return norm.sf((np.log(c / s) - mu) / sd)

    t = out.time[out.data.mask]
    expected = (dead_by(t + OFFSET) - dead_by(OFFSET)) / (1.0 - dead_by(OFFSET))
    b = np.clip(np.searchsorted(v.edges, t, side="right") - 1, 0, len(v.x) - 1)
    want = np.array([expected[b == k].mean() for k in range(len(v.x))])
    assert want[-1] > 0.2                      # the test has deaths to count
    np.testing.assert_allclose(v.sim_ended, want, atol=0.03)
    # entry is conditional on being alive: at the first observation (data time 0, its own
    # bin) no simulated patient has died, where unconditionally dead_by(2) would have
    assert v.edges[1] <= TIMES[1] and v.sim_ended[0] == 0.0
    assert dead_by(OFFSET) > 0.02
    text = "\n".join(vpc_report_lines(out))
    assert "End events in the VPC" in text and "lost to end events per bin" in text


def test_without_end_events_the_vpc_simulates_every_observation(fitted):
    from progression.fit.population._outputs import population_outputs

    out = population_outputs(fitted, end_events=())
    assert out.vpcs["log_x"].sim_ended is None
    assert out.vpc_end_events == ()
    # the keyword takes any terminal event; a name that is not one is refused by name
    out = population_outputs(fitted, n_sim=50, end_events=["lost"])
    assert out.vpc_end_events == ("lost",) and np.all(out.vpcs["log_x"].sim_ended == 0.0)
    with pytest.raises(ConfigError, match="'half' is not a terminal event"):
        population_outputs(fitted, n_sim=50, end_events=["half"])


def test_a_non_terminal_hazard_event_ends_observations_through_terminal_ones(tmp_path):
    """A hazard's event that is not terminal (a joint fit's own death mechanism beside the
    model's) may end observations; it is timed alone, so the model's terminal ``death``
    (here at model time 2.31, before most ``lost`` events) does not hide it; a non-terminal
    event that is no hazard's stays refused."""
    text = (MODELS / "decay_death.toml").read_text().replace(
        'rate = "h"\nevent = "lost"', 'rate = "h"\nevent = "lost"\nterminal = false')
    assert "terminal = false" in text
    problem = Problem.from_config(_config(tmp_path, 'vpc_end_events = ["lost"]', text))
    assert not next(e for e in problem.model.events if e.name == "lost").terminal
    designs = [d.replace(time=TIMES, obs=np.zeros(TIMES.size, int),
                         value=np.zeros(TIMES.size), cens=np.zeros(TIMES.size, int),
                         limit=np.full(TIMES.size, np.nan)) for d in _designs([0.1])]
    R, h = 40, 0.4
    end = EndEvents(problem, designs, ["lost"])
    assert end.alone
    drawn = end.draw(_rows(problem, np.full(R, 0.6), h=h), np.zeros(R, int),
                     np.random.default_rng(7))
    z = np.random.default_rng(7).standard_normal(R)
    T = -np.log(0.5 * erfc(z / math.sqrt(2.0))) / h
    far = np.min(np.abs(TIMES[None] + OFFSET - T[:, None]), axis=1) > 1e-6
    assert far.sum() > 35 and np.sum(T > math.log(X0 / XD) / 0.6) >= 5
    np.testing.assert_array_equal(drawn.ended[far], (TIMES[None] + OFFSET >= T[:, None])[far])
    with pytest.raises(ConfigError, match=r"or its hazards' events.*'half' is not a "
                                          r"terminal event or a hazard's"):
        EndEvents(problem, designs, ["half"])

"""The Shadow trial (spec.trial.mode Shadow): the API's checks, the plan's HTTPRoute with and
without the RequestMirror filter, the trial's Service and served name, and the switching steps
through a Shadow trial's life (start, fail, pass, no HTTPRoute CRD, gateway removed)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from test_trial_decisions import (
    DENSE,
    MOE,
    ROOT,
    T0,
    H,
    M,
    P,
    Run,
    actions,
    events,
    ready,
    starting,
)

from breakeven.core import api, planning, statuses, switching, traffic
from breakeven.core.rendering import routes
from breakeven.shell import inputs

GATEWAY = {
    "parentRefs": [
        {"name": "inference", "namespace": "gateways", "sectionName": "http"},
        {"name": "internal", "port": 8080},
    ],
    "hostnames": ["llm.example.com"],
}
LWS_TEMPLATES = ("leaderTemplate", "workerTemplate")
NOT_SERVED = "the cluster does not serve httproutes.gateway.networking.k8s.io/v1"


def body(**spec: Any) -> dict[str, Any]:
    plan = inputs.load_plans(ROOT / "examples/plans/deepseek-v3-sustained.yaml")[0]
    out = plan.model_dump(by_alias=True, mode="json", exclude_none=True)
    out["spec"].update(spec)
    return out


def shadow_evaluation(
    traffic_profile: str = "no-expert-telemetry", gateway: dict[str, Any] | None = GATEWAY,
    **trial: Any,
) -> planning.Evaluation:  # fmt: skip
    data = body()
    data["metadata"]["generation"] = 1
    data["spec"]["policy"]["promotionWindow"] = "1h"
    data["spec"]["trial"] = {"duration": "2h", "retryAfter": "6h", "mode": "Shadow", **trial}
    if gateway is not None:
        data["spec"]["gateway"] = gateway
    plan = api.ServingPlan.model_validate(data)
    cluster = inputs.load_cluster(ROOT / "examples/nodes/h200-infiniband.yaml", plan)
    return planning.evaluate(
        plan, cluster, inputs.load_traffic(ROOT / f"examples/traffic/{traffic_profile}.yaml")
    )


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as caught:
        api.ServingPlan.model_validate(data)
    return inputs.describe(caught.value, "")


# ------------------------------------------------------------------------------------ the API


def test_the_default_trial_is_a_canary_with_a_full_mirror_percentage() -> None:
    plan = api.ServingPlan.model_validate(body())
    assert plan.spec.trial.mode == api.TrialMode.CANARY
    assert plan.spec.trial.mirror_percent == 100
    assert plan.spec.gateway is None


def test_shadow_without_a_gateway_is_refused_naming_the_field() -> None:
    message = error_of(body(trial={"mode": "Shadow"}))
    assert "trial.mode Shadow needs spec.gateway.parentRefs" in message
    # The CRD says the same through its CEL rule.
    rules = [r for rules in api.CEL_RULES.values() for r in rules]
    assert any(r["message"] == api.SHADOW_NEEDS_GATEWAY for r in rules)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"trial": {"mode": "Shadow", "mirrorPercent": 0}, "gateway": GATEWAY}, "mirrorPercent"),
        ({"trial": {"mirrorPercent": 101}}, "mirrorPercent"),
        ({"trial": {"mode": "Mirror"}}, "trial.mode"),
        ({"gateway": {"parentRefs": []}}, "gateway.parentRefs"),
        ({"gateway": {}}, "gateway.parentRefs"),
        ({"gateway": {"parentRefs": [{"name": ""}]}}, "gateway.parentRefs[0].name"),
        ({"gateway": {"parentRefs": [{"name": "g", "port": 0}]}}, "gateway.parentRefs[0].port"),
        (
            {"gateway": {"parentRefs": [{"name": "g", "namespace": "Not_A_Label"}]}},
            "gateway.parentRefs[0].namespace",
        ),
        (
            {"gateway": {"parentRefs": [{"name": "g"}], "hostnames": ["bad host"]}},
            "gateway.hostnames[0]",
        ),
        (
            {"gateway": {"parentRefs": [{"name": "g"}] * 33}},
            "gateway.parentRefs",
        ),
        (
            {"gateway": {"parentRefs": [{"name": "g"}], "hostnames": ["a.example"] * 17}},
            "gateway.hostnames",
        ),
        ({"gateway": {"parentRefs": [{"name": "g", "kind": "Service"}]}}, "kind"),
    ],
)
def test_bad_gateway_and_trial_input_is_refused_naming_the_field(
    spec: dict[str, Any], field: str
) -> None:
    assert field in error_of(body(**spec))


def test_a_wildcard_hostname_and_a_shadow_plan_with_a_gateway_are_accepted() -> None:
    plan = api.ServingPlan.model_validate(
        body(
            trial={"mode": "Shadow", "mirrorPercent": 10},
            gateway={"parentRefs": [{"name": "g"}], "hostnames": ["*.example.com"]},
        )
    )
    assert plan.spec.trial.mirror_percent == 10


# ------------------------------------------------------------------------------ rendering


def test_the_route_sends_everything_to_the_stable_service_without_a_mirror() -> None:
    plan = shadow_evaluation().plan
    route = routes.http_route(plan)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["kind"] == "HTTPRoute"
    assert route["metadata"]["name"] == "deepseek-v3-sustained"
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "inference",
            "namespace": "gateways",
            "sectionName": "http",
        },
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "internal", "port": 8080},
    ]
    assert route["spec"]["hostnames"] == ["llm.example.com"]
    [rule] = route["spec"]["rules"]
    assert rule == {
        "backendRefs": [
            {"group": "", "kind": "Service", "name": "deepseek-v3-sustained", "port": 80}
        ]
    }


@pytest.mark.parametrize("percent", [1, 37, 100])
def test_a_shadow_route_mirrors_the_percentage_to_the_trial_service(percent: int) -> None:
    plan = shadow_evaluation().plan
    [rule] = routes.http_route(plan, percent)["spec"]["rules"]
    assert rule["backendRefs"][0]["name"] == "deepseek-v3-sustained"
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {
                    "group": "",
                    "kind": "Service",
                    "name": "deepseek-v3-sustained-trial",
                    "port": 80,
                },
                "percent": percent,
            },
        }
    ]


@pytest.mark.parametrize("percent", [0, 101, -5])
def test_a_mirror_percentage_outside_1_to_100_is_refused(percent: int) -> None:
    with pytest.raises(ValueError, match=r"spec\.trial\.mirrorPercent"):
        routes.http_route(shadow_evaluation().plan, percent)


def test_a_plan_without_a_gateway_renders_no_route() -> None:
    plan = api.ServingPlan.model_validate(body())
    with pytest.raises(ValueError, match=r"spec\.gateway"):
        routes.http_route(plan)


def test_the_trial_service_selects_only_the_moe_endpoint_pods() -> None:
    svc = routes.trial_service(shadow_evaluation().plan)
    assert svc["metadata"]["name"] == "deepseek-v3-sustained-trial"
    assert svc["spec"]["selector"] == {
        "breakeven.dev/plan": "deepseek-v3-sustained",
        "breakeven.dev/mode": "moe",
        "breakeven.dev/endpoint": "true",
    }


def test_the_shadow_trial_labels_its_metrics_with_a_name_the_traffic_query_does_not_match() -> None:
    ev = shadow_evaluation()
    model = ev.plan.spec.model.name
    objs = routes.shadowed(statuses.report.manifests_for(ev, MOE), model)
    vllm = [
        c
        for o in objs
        if o["kind"] in ("Deployment", "LeaderWorkerSet")
        for template in (
            [o["spec"]["template"]]
            if o["kind"] == "Deployment"
            else [
                o["spec"]["leaderWorkerTemplate"][t] for t in ("leaderTemplate", "workerTemplate")
            ]
        )
        for c in template["spec"]["containers"]
        if c["name"] == "vllm"
    ]
    assert vllm
    for container in vllm:
        args = container["args"]
        at = args.index("--served-model-name")
        # The first name labels vLLM's metrics; the second still answers mirrored requests.
        assert args[at + 1 : at + 3] == [f"{model}-breakeven-shadow", model]
    query = traffic.query_for(ev.plan, "http://prometheus:9090")
    assert query is not None
    assert query.selector["model_name"] == model != routes.shadow_model_name(model)
    # The EPLB exporter still labels the trial's balance with the model name.
    assert query.balance_selector["model"] == model


# ------------------------------------------------------------------------------ switching


def writes_of(ev: planning.Evaluation, step: switching.Step) -> list[tuple[str, Any]]:
    return list(statuses.writes(ev.plan, ev, step, None).writes)


def applied(ev: planning.Evaluation, step: switching.Step, kind: str) -> list[dict[str, Any]]:
    return [o for v, o in writes_of(ev, step) if v == "apply" and o["kind"] == kind]


def shadow_running(run: Run, ev: planning.Evaluation) -> switching.Step:
    run(ev, T0, {})
    run(ev, T0 + 30 * M, {DENSE: ready(DENSE)})
    return run(ev, T0 + 61 * M, {DENSE: ready(DENSE)})


def test_a_shadow_trial_mirrors_through_the_route_and_keeps_the_service_on_dense() -> None:
    ev = shadow_evaluation(mirrorPercent=40)
    run = Run()
    step = shadow_running(run, ev)
    assert step.trial is not None and step.trial.phase == P.RUNNING
    assert step.trial.share == "mirror 40% of the HTTPRoute's requests"
    assert "mirrored 40% of the requests by the HTTPRoute" in step.trial.reason
    assert actions(step) == [
        ("apply", "Dense", 1),
        ("apply", "MoE", 1),
        ("select", "Dense", None),
        ("route", "mode", None),
    ]
    assert [a.shadow for a in step.actions if a.kind == "apply"] == [False, True]
    [svc] = [s for s in applied(ev, step, "Service") if s["metadata"]["name"].endswith("sustained")]
    assert svc["spec"]["selector"]["breakeven.dev/mode"] == "dense"  # never the trial's pods
    [trial_svc] = [
        s for s in applied(ev, step, "Service") if s["metadata"]["name"].endswith("trial")
    ]
    assert trial_svc["spec"]["selector"]["breakeven.dev/mode"] == "moe"
    [route] = applied(ev, step, "HTTPRoute")
    [mirror] = route["spec"]["rules"][0]["filters"]
    assert mirror["requestMirror"]["percent"] == 40
    assert run.status is not None and run.status.route is not None
    assert "mirroring 40% of requests to Service/deepseek-v3-sustained-trial" in run.status.route
    # The trial Service is written before the route that mirrors to it.
    kinds = [o["kind"] for v, o in writes_of(ev, step) if v == "apply"]
    assert kinds.index("HTTPRoute") > max(i for i, k in enumerate(kinds) if k == "Service")


def test_before_and_after_a_shadow_trial_the_route_is_plain_and_the_trial_service_pruned() -> None:
    ev = shadow_evaluation()
    run = Run()
    run(ev, T0, {})
    before = run(ev, T0 + 30 * M, {DENSE: ready(DENSE)})
    [route] = applied(ev, before, "HTTPRoute")
    assert "filters" not in route["spec"]["rules"][0]
    assert ("prune", "Service/deepseek-v3-sustained-trial") in writes_of(ev, before)
    run = Run()
    shadow_running(run, ev)
    hot = shadow_evaluation("hot-expert")
    both = {DENSE: ready(DENSE), MOE: ready(MOE)}
    failed = run(hot, T0 + 61 * M + 2 * H, both)
    assert failed.trial is not None and failed.trial.phase == P.FAILED
    assert ("delete", "MoE", None) in actions(failed)
    [route] = applied(hot, failed, "HTTPRoute")
    assert "filters" not in route["spec"]["rules"][0]
    assert ("prune", "Service/deepseek-v3-sustained-trial") in writes_of(hot, failed)
    assert not any(a.shadow for a in failed.actions)


def test_a_passed_shadow_trial_is_removed_and_the_promotion_starts_a_fresh_moe_workload() -> None:
    ev = shadow_evaluation()
    run = Run()
    shadow_running(run, ev)
    balanced = shadow_evaluation("sustained")
    both = {DENSE: ready(DENSE), MOE: ready(MOE)}
    passed = run(balanced, T0 + 61 * M + 2 * H, both)
    assert passed.trial is not None and passed.trial.phase == P.PASSED
    assert "TrialPassed" in events(passed)
    # Dense keeps the Service; the shadow-named trial goes, the route is plain again.
    assert passed.mode == DENSE and passed.target == DENSE
    assert ("delete", "MoE", None) in actions(passed)
    assert ("select", "Dense", None) in actions(passed)
    assert [a.mirror for a in passed.actions if a.kind == "route"] == [None]
    assert passed.trial.workload is None
    # Next: the ordinary make-before-break switch applies a plain MoE workload; the Service
    # stays on dense until that one is ready.
    switch = run(balanced, T0 + 62 * M + 2 * H, {DENSE: ready(DENSE)})
    assert switch.target == MOE and switch.mode == DENSE
    assert ("apply", "MoE", 1) in actions(switch)
    assert not any(a.shadow for a in switch.actions)
    [svc] = applied(balanced, switch, "Service")
    assert svc["spec"]["selector"]["breakeven.dev/mode"] == "dense"
    moved = run(balanced, T0 + 70 * M + 2 * H, {DENSE: ready(DENSE), MOE: ready(MOE)})
    assert moved.mode == MOE
    [svc] = applied(balanced, moved, "Service")
    assert svc["spec"]["selector"]["breakeven.dev/mode"] == "moe"
    assert moved.trial is not None and moved.trial.phase == P.PASSED


def test_without_the_httproute_crd_a_shadow_trial_waits_pending_and_dense_serves() -> None:
    ev = shadow_evaluation()
    run = Run()
    run(ev, T0, {})
    at = T0 + 61 * M
    step = switching.step(ev, run.status, {DENSE: ready(DENSE)}, at, NOT_SERVED)
    assert step.trial is not None and step.trial.phase == P.PENDING
    assert step.trial.reason == f"spec.trial.mode Shadow: {NOT_SERVED}"
    assert events(step) == ["TrialPending"]
    assert actions(step) == [
        ("apply", "Dense", 1),
        ("select", "Dense", None),
        ("prune", "mode", None),
    ]
    assert step.route == f"HTTPRoute deepseek-v3-sustained not applied: {NOT_SERVED}"
    assert applied(ev, step, "HTTPRoute") == []
    outcome = statuses.build(ev, step, {DENSE: ready(DENSE)}, run.status, at)
    status = api.ServingPlanStatus.model_validate(outcome.status)
    assert [(e.type, e.reason) for e in outcome.events] == [
        ("Normal", "TrialPending"),
        ("Warning", "RouteNotApplied"),
    ]
    # Said once: the next reconcile, with the same route status, posts no new RouteNotApplied.
    again = switching.step(ev, status, {DENSE: ready(DENSE)}, at + M, NOT_SERVED)
    later = statuses.build(ev, again, {DENSE: ready(DENSE)}, status, at + M)
    assert [e.reason for e in later.events] == []
    trial_condition = next(c for c in status.conditions if c.type == "Trial")
    assert (trial_condition.status, trial_condition.reason) == ("True", "TrialPending")
    assert status.route == step.route


def test_a_running_shadow_trial_is_aborted_when_the_crd_goes_away() -> None:
    ev = shadow_evaluation()
    run = Run()
    shadow_running(run, ev)
    step = switching.step(ev, run.status, {DENSE: ready(DENSE), MOE: starting(MOE)},
                          T0 + 70 * M, NOT_SERVED)  # fmt: skip
    assert step.trial is not None and step.trial.phase == P.ABORTED
    assert ("delete", "MoE", None) in actions(step)
    assert not any(a.kind == "route" for a in step.actions)
    assert ("prune", "Service/deepseek-v3-sustained-trial") in writes_of(ev, step)


def test_removing_the_gateway_prunes_the_route_and_the_trial_service() -> None:
    ev = shadow_evaluation(mode="Canary")
    run = Run()
    run(ev, T0, {})
    assert run.status is not None and run.status.route is not None
    plain = shadow_evaluation(gateway=None, mode="Canary")
    step = run(plain, T0 + M, {DENSE: ready(DENSE)})
    assert ("prune", "HTTPRoute/deepseek-v3-sustained") in writes_of(plain, step)
    assert ("prune", "Service/deepseek-v3-sustained-trial") in writes_of(plain, step)
    assert step.route is None and run.status.route is None
    again = run(plain, T0 + 2 * M, {DENSE: ready(DENSE)})
    assert not [w for w in writes_of(plain, again) if w[0] == "prune"]


def test_a_canary_plan_with_a_gateway_keeps_the_canary_and_a_plain_route() -> None:
    ev = shadow_evaluation(mode="Canary")
    step = shadow_running(Run(), ev)
    assert ("select", "both", None) in actions(step)
    assert [a.mirror for a in step.actions if a.kind == "route"] == [None]
    assert step.trial is not None and step.trial.share == "0/1 ready endpoints"


def test_the_dry_run_lists_the_route() -> None:
    ev = shadow_evaluation()
    kinds = [o["kind"] for o in statuses.report.render_manifests(ev)]
    assert kinds[-2:] == ["Service", "HTTPRoute"]

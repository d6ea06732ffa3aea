"""Generate the CRD, the chart's copy of it, and docs/api.md from the pydantic models.

    api.py (pydantic)  ->  structural OpenAPI v3  ->  manifests/crd.yaml
                                                  ->  charts/breakeven/crds/servingplans.yaml
                                                  ->  docs/api.md

Pydantic emits JSON Schema 2020-12; a CRD needs a structural OpenAPI v3.0 schema: every `$ref`
inlined, `nullable: true` instead of `anyOf: [X, null]`, no titles, `exclusiveMinimum` as a
boolean, a type on every node. Rules that span fields come from `api.CEL_RULES`.

`python -m breakeven.tools.schema` writes the files; `--check` fails when they differ from the
models (tests run the same comparison).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from breakeven.core import api
from breakeven.tools import deploy

ROOT = Path(__file__).resolve().parents[3]
CRD_PATH = ROOT / "manifests" / "crd.yaml"
CHART_CRD_PATH = ROOT / "charts" / "breakeven" / "crds" / "servingplans.yaml"
API_DOC_PATH = ROOT / "docs" / "api.md"
RBAC_PATH = ROOT / "manifests" / "rbac.yaml"
OPERATOR_PATH = ROOT / "manifests" / "operator.yaml"
CHART_RULES_PATH = ROOT / "charts" / "breakeven" / "files" / "rules.yaml"
PEERING_PATH = ROOT / "manifests" / "peering.yaml"
CHART_PEERING_CRD_PATH = ROOT / "charts" / "breakeven" / "crds" / "kopfpeerings.yaml"

Schema = dict[str, Any]

_DROP = {"title", "$defs"}


def _structural(node: Schema, defs: dict[str, Schema], rules: dict[str, list[Any]]) -> Schema:
    """Rewrite one pydantic JSON Schema node into a structural OpenAPI v3.0 node."""
    node = copy.deepcopy(node)
    description = node.get("description")
    default = node.get("default", ...)
    extra_rules: list[Any] = []

    if "$ref" in node:
        name = node.pop("$ref").rsplit("/", 1)[-1]
        target = _structural(defs[name], defs, rules)
        extra_rules = rules.get(name, [])
        node = {**target, **{k: v for k, v in node.items() if k not in _DROP}}
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        options = [o for o in any_of if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot make a structural schema of anyOf {any_of}")
        inner = _structural(options[0], defs, rules)
        node = {**inner, **{k: v for k, v in node.items() if k not in _DROP}}
        if len(options) != len(any_of):
            node["nullable"] = True
    for key in _DROP:
        node.pop(key, None)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[plain] = node.pop(bound)
            node[bound] = True
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if node.get("x-kubernetes-int-or-string"):
        # An integer or a string: a structural schema gives no type; the pattern applies to
        # strings only.
        node.pop("type", None)
    if "properties" in node:
        node["type"] = "object"
        node["properties"] = {k: _structural(v, defs, rules) for k, v in node["properties"].items()}
    if node.get("additionalProperties") is False:
        # extra="forbid": the API server prunes (and with strict field validation rejects)
        # unknown fields; a structural schema may not combine properties and
        # additionalProperties.
        node.pop("additionalProperties")
    if node.get("additionalProperties") is True:
        node.pop("additionalProperties")
        node["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"], defs, rules)
    if "items" in node:
        node["items"] = _structural(node["items"], defs, rules)
    names = node.pop("propertyNames", None)
    if names:
        # A structural schema has no propertyNames: bound a map's keys with CEL instead.
        extra_rules = [*node.pop("x-kubernetes-validations", []), *extra_rules, _key_rule(names)]
    if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
        node["type"] = "object"
    if description is not None:
        node["description"] = description
    if default is not ... and default is not None:
        node["default"] = default
    elif "default" in node and node["default"] is None:
        node.pop("default")
    if extra_rules:
        node["x-kubernetes-validations"] = [*node.get("x-kubernetes-validations", []), *extra_rules]
    return node


def _key_rule(names: Schema) -> dict[str, str]:
    """The CEL rule that bounds a map's keys as pydantic's `propertyNames` does."""
    checks, words = [], []
    if "minLength" in names:
        checks.append(f"k.size() >= {names['minLength']}")
        words.append(f"at least {names['minLength']}")
    if "maxLength" in names:
        checks.append(f"k.size() <= {names['maxLength']}")
        words.append(f"at most {names['maxLength']}")
    if set(names) - {"minLength", "maxLength", "type"}:
        raise ValueError(f"cannot express propertyNames {names} in CEL")
    return api.cel(
        f"self.all(k, {' && '.join(checks)})", f"keys must be {' and '.join(words)} characters"
    )


def _defaults_for_objects(node: Schema) -> None:
    """Default nested settings objects to {} so the API server fills in their defaults."""
    required = set(node.get("required") or ())
    for name, prop in (node.get("properties") or {}).items():
        if (
            prop.get("type") == "object"
            and "properties" in prop
            and not prop.get("nullable")
            and name not in required
        ):
            prop.setdefault("default", {})
        _defaults_for_objects(prop)
        if "items" in prop:
            _defaults_for_objects(prop["items"])


def openapi_schema() -> Schema:
    """The structural schema of a whole ServingPlan object."""
    rules = {cls.__name__: value for cls, value in api.CEL_RULES.items()}
    spec_json = api.ServingPlanSpec.model_json_schema(by_alias=True)
    status_json = api.ServingPlanStatus.model_json_schema(by_alias=True)
    defs = {**spec_json.get("$defs", {}), **status_json.get("$defs", {})}
    spec = _structural(spec_json, defs, rules)
    spec.setdefault("x-kubernetes-validations", rules["ServingPlanSpec"])
    _defaults_for_objects(spec)
    status = _structural(status_json, defs, rules)
    # The operator's own bookkeeping (kopf's progress) lives under status too.
    status["x-kubernetes-preserve-unknown-fields"] = True
    return {
        "type": "object",
        "description": (api.ServingPlan.__doc__ or "").strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "breakeven.dev/v1alpha1"},
            "kind": {"type": "string", "description": "ServingPlan"},
            # The API server allows nothing but the type on metadata.
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def crd() -> Schema:
    columns = [
        ("Mode", ".status.mode", "The mode serving traffic now"),
        ("Target", ".status.targetMode", "The mode the rubric and hysteresis aim for"),
        ("Ready", ".status.ready", "Ready pods of the serving workload"),
        ("Reason", ".status.reason", "Why this mode"),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {"app.kubernetes.io/name": "breakeven"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": ["breakeven"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": n, "type": "string", "jsonPath": p, "description": d}
                        for n, p, d in columns
                    ]
                    + [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    """A SafeDumper that writes a repeated object out again instead of as `&id001`/`*id001`:
    Kubernetes manifests are read by people and by tools that do not expect YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_NoAliasDumper, sort_keys=False, width=100)


def dump_all(docs: list[Any]) -> str:
    return yaml.dump_all(docs, Dumper=_NoAliasDumper, sort_keys=False, width=100)


def crd_yaml() -> str:
    header = (
        "# Generated by `python -m breakeven.tools.schema` from operator/breakeven/core/api.py."
        " Do not edit.\n"
    )
    return header + dump(crd())


# ----------------------------------------------------------------------------- API docs


def _type_name(node: Schema) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = node.get("type", "object")
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if kind == "array":
        return f"list of {_type_name(node.get('items', {}))}"
    if kind == "object" and "additionalProperties" in node:
        return f"map of {_type_name(node['additionalProperties'])}"
    return str(kind)


def _doc_rows(node: Schema, path: str, out: list[str]) -> None:
    for name, prop in (node.get("properties") or {}).items():
        field = f"{path}.{name}" if path else name
        default = prop.get("default")
        shown = "" if default is None or default == {} else f"`{default}`"
        limits = []
        for key in ("minimum", "maximum", "minLength", "maxLength", "maxItems", "pattern"):
            if key in prop:
                limits.append(f"{key} `{prop[key]}`".replace("|", "\\|"))
        if not prop.get("properties"):  # a field's own bound, such as a duration's maximum
            limits += [r["message"] for r in prop.get("x-kubernetes-validations", [])]
        text = " ".join((prop.get("description") or "").split()).replace("|", "\\|")
        if limits:
            text += f" ({', '.join(limits)})"
        out.append(f"| `{field}` | {_type_name(prop)} | {shown} | {text} |")
        target = prop.get("items", prop) if prop.get("type") == "array" else prop
        if target.get("properties"):
            _doc_rows(target, field + ("[]" if prop.get("type") == "array" else ""), out)


def api_markdown() -> str:
    schema = openapi_schema()
    lines = [
        "# ServingPlan API reference (`breakeven.dev/v1alpha1`)",
        "",
        "Generated by `python -m breakeven.tools.schema` from `operator/breakeven/core/api.py`;"
        " do not edit.",
        "`kubectl explain servingplan.spec` shows the same descriptions.",
        "",
        "## Rules that span fields (enforced by the API server with CEL, and by the CLI)",
        "",
    ]
    for cls, rules in api.CEL_RULES.items():
        for rule in rules:
            lines.append(f"- on `{cls.__name__}`: {rule['message']} (`{rule['rule']}`)")
    for section in ("spec", "status"):
        lines += [
            "",
            f"## {section}",
            "",
            "| field | type | default | description |",
            "| --- | --- | --- | --- |",
        ]
        _doc_rows(schema["properties"][section], section, lines)
    return "\n".join(lines) + "\n"


def _generated(docs: list[Schema]) -> str:
    header = (
        "# Generated by `python -m breakeven.tools.schema`"
        " from operator/breakeven/tools/deploy.py.\n"
    )
    return header + dump_all(docs)


def outputs() -> dict[Path, str]:
    text = crd_yaml()
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": deploy.NAME}}
    return {
        CRD_PATH: text,
        CHART_CRD_PATH: text,
        API_DOC_PATH: api_markdown(),
        RBAC_PATH: _generated(deploy.rbac()),
        # The peering object goes with the Deployment, after its CRD (manifests/peering.yaml) is in.
        OPERATOR_PATH: _generated(
            [namespace, deploy.peering_object(), deploy.operator_deployment()]
        ),
        PEERING_PATH: _generated(deploy.peering_crds()),
        CHART_PEERING_CRD_PATH: _generated(deploy.peering_crds()),
        CHART_RULES_PATH: _generated([]).splitlines()[0] + "\n" + dump(deploy.RULES),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m breakeven.tools.schema", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated files drifted")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(
            f"generated files are stale: {', '.join(stale)}; run `make generate`", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Python half of `cargo xtask manifests`, run with the tools venv's interpreter.

  helm CHART VALUES OUT KUBE_VERSION RELEASE NAMESPACE
      helm lint (strict) with the values, the values against values.schema.json, then the
      templates rendered as `helm template` would (hooks included) into OUT.
  validate CRDS_OUT KUBE_VERSIONS FILE...
      every object of every file against the strict Kubernetes schemas of each version
      (comma-separated); prometheus-operator objects go to CRDS_OUT for the node check;
      config.toml of each ConfigMap must parse as TOML. A kind with no schema is a failure.
  consistency CHART_FILE KUSTOMIZE_FILE SOURCES_DIR
      the chart's and the kustomize overlay's rendering of one deployment must agree on what
      the pods run and with which privileges, on the alert rules and on the dashboards; every
      metric the rules and dashboards name must be one the service declares (a prometheus
      constructor in SOURCES_DIR).
  rules FILE OUT_DIR TESTS
      the groups of the PrometheusRule in FILE as a plain Prometheus rules file
      OUT_DIR/alerts.yaml, and the promtool unit tests TESTS beside it (they name that file),
      for `promtool check rules` and `promtool test rules`.
  dashboards FILE EXPRESSIONS_OUT
      each Grafana dashboard of the ConfigMaps in FILE labelled grafana_dashboard: valid JSON,
      a unique uid, a `datasource` variable every panel and query uses, queries on every
      panel; their PromQL (variables replaced by sample values) goes to EXPRESSIONS_OUT for the
      node check.

Problems go to stdout, one per line; the exit status is 1 if there was any.
"""

import json
import os
import re
import sys
import tomllib

import yaml

PROMETHEUS_OPERATOR_GROUP = "monitoring.coreos.com/"


def fail(problems):
    for p in problems:
        print(f"  problem: {p}")
    return 1 if problems else 0


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def helm(chart, values_file, out, kube_version, release, namespace):
    import helm_python

    with open(values_file, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    problems = []
    report = helm_python.lint(chart, values, strict=True, kube_version=kube_version)
    for m in report["messages"]:
        # 1 is INFO (e.g. "icon is recommended"): shown, not counted.
        line = f"helm lint [{m['severity']}] {m['path']}: {m['error']}"
        if m["severity"] >= 2:
            problems.append(line)
        else:
            print(f"  {line}")
    problems += [f"helm lint: {e}" for e in report["errors"]]
    if problems:
        return fail(problems)
    with helm_python.Chart.load(chart) as c:
        c.validate_schema(values)
        rendered = c.render(values, name=release, namespace=namespace, is_install=True)
    docs = []
    for template, text in sorted(rendered.items()):
        if not template.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
    print(f"  {len(rendered)} templates, {len(docs)} objects -> {out}")
    return 0


def schema_errors(doc, version):
    """Every violation of the strict schema of `doc`'s kind in Kubernetes `version` (None: there
    is no such schema). kubernetes_validate's own validate() stops at the first one."""
    import jsonschema
    import kubernetes_validate.utils as kv
    from referencing import Registry, Resource

    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = kv.schema_contents(f"{schema_dir}/{doc['kind'].lower()}-{api}.json", version)
    except FileNotFoundError:
        return None
    definitions = kv.schema_contents(f"{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))


def validate(crds_out, versions, files):
    problems, crds, counts = [], [], {}
    for path in files:
        for doc in load_all(path):
            kind, api = doc.get("kind"), doc.get("apiVersion", "")
            where = f"{os.path.basename(path)}: {kind}/{doc.get('metadata', {}).get('name')}"
            if api.startswith(PROMETHEUS_OPERATOR_GROUP):
                crds.append({"where": where, "object": doc})
                continue
            for version in versions:
                errors = schema_errors(doc, version)
                if errors is None:
                    problems.append(f"{where}: no schema for {api} {kind} in Kubernetes {version}")
                    continue
                for e in errors:
                    at = ".".join(str(p) for p in e.absolute_path)
                    problems.append(f"{where} against Kubernetes {version}: {at}: {e.message}")
            if kind == "ConfigMap" and "config.toml" in doc.get("data", {}):
                try:
                    tomllib.loads(doc["data"]["config.toml"])
                except tomllib.TOMLDecodeError as e:
                    problems.append(f"{where}: config.toml: {e}")
            counts[path] = counts.get(path, 0) + 1
    for path, n in counts.items():
        print(f"  {os.path.basename(path)}: {n} objects checked against Kubernetes "
              f"{' and '.join(versions)} (strict schemas)")
    print(f"  {len(crds)} prometheus-operator objects left for the CRD check")
    with open(crds_out, "w", encoding="utf-8") as f:
        json.dump(crds, f)
    return fail(problems)


# What must not differ between two renderings of the same deployment.
POD_FIELDS = ["securityContext", "automountServiceAccountToken", "enableServiceLinks",
              "serviceAccountName", "terminationGracePeriodSeconds", "topologySpreadConstraints"]
CONTAINER_FIELDS = ["command", "ports", "securityContext", "startupProbe", "livenessProbe",
                    "readinessProbe", "lifecycle", "resources"]


def workloads(docs):
    """Each pod template's containers by name, with the pod spec they belong to."""
    out = {}
    for d in docs:
        if d["kind"] not in ("Deployment", "Job"):
            continue
        pod = d["spec"]["template"]["spec"]
        for c in pod["containers"]:
            out[c["name"]] = (pod, c)
    return out


def without_hash(name):
    # kustomize's configMapGenerator appends "-<hash>" to the name it generates.
    return re.sub(r"-[a-z0-9]{10}$", "", name)


def volumes(pod):
    vols = []
    for v in pod.get("volumes", []):
        v = json.loads(json.dumps(v))
        if "configMap" in v:
            v["configMap"]["name"] = without_hash(v["configMap"]["name"])
        vols.append(v)
    return sorted(vols, key=lambda v: v["name"])


def mounts(container):
    return sorted(container.get("volumeMounts", []), key=lambda m: m["mountPath"])


def config_toml(docs):
    for d in docs:
        if d["kind"] == "ConfigMap":
            return {k: (tomllib.loads(v) if k == "config.toml" else v.strip())
                    for k, v in d.get("data", {}).items()}
    return None


def rules(docs):
    return [d["spec"] for d in docs if d["kind"] == "PrometheusRule"]


DASHBOARD_LABEL = "grafana_dashboard"


def dashboard_maps(docs):
    """The data of each ConfigMap Grafana's sidecar loads, by name."""
    return {d["metadata"]["name"]: d.get("data", {}) for d in docs
            if d["kind"] == "ConfigMap" and DASHBOARD_LABEL in d["metadata"].get("labels", {})}


# Grafana's variables in a query, with values that make it plain PromQL for the parser.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                     "$namespace": "uos"}
# Where a dashboard names its data source: the `datasource` variable, so one file serves any
# Prometheus.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def dashboard_problems(where, dash, expressions):
    """What is wrong with one dashboard; its queries are appended to `expressions`."""
    problems = []
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        problems.append(f"{where}: no `datasource` variable of type datasource")
    if not dash.get("uid") or not dash.get("title"):
        problems.append(f"{where}: a dashboard needs a uid and a title")
    for name, v in variables.items():
        if v.get("type") == "query":
            if v.get("datasource") != DATASOURCE:
                problems.append(f"{where}: variable {name}: datasource must be {DATASOURCE}")
            # Grafana's label_values(SELECTOR, LABEL): the selector is PromQL.
            query = re.fullmatch(r"label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)",
                                 v.get("definition", ""))
            if not query:
                problems.append(f"{where}: variable {name}: expected label_values(…, label)")
                continue
            expressions.append({"where": f"{where}: variable {name}", "expr": query[1]})
    panels = dash.get("panels", [])
    if not panels:
        problems.append(f"{where}: no panels")
    for p in panels:
        # Rows group panels; only collapsed rows hold theirs inside.
        inner = p.get("panels", []) if p.get("type") == "row" else [p]
        for panel in inner:
            what = f"{where}: panel {panel.get('title')!r}"
            if panel.get("datasource") != DATASOURCE:
                problems.append(f"{what}: datasource must be {DATASOURCE}")
            targets = panel.get("targets", [])
            if not targets:
                problems.append(f"{what}: no queries")
            for t in targets:
                if t.get("datasource") != DATASOURCE:
                    problems.append(f"{what}: query {t.get('refId')}: datasource must be "
                                    f"{DATASOURCE}")
                expr = t.get("expr", "")
                if not expr.strip():
                    problems.append(f"{what}: query {t.get('refId')} has no expr")
                for var, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(var, value)
                if "$" in expr:
                    problems.append(f"{what}: unknown variable in {t['expr']!r}")
                expressions.append({"where": f"{what} query {t.get('refId')}", "expr": expr})
    return problems


def dashboards(path, expressions_out):
    problems, expressions, uids, count = [], [], {}, 0
    maps = dashboard_maps(load_all(path))
    if not maps:
        problems.append(f"{os.path.basename(path)}: no ConfigMap labelled {DASHBOARD_LABEL}")
    for name, data in sorted(maps.items()):
        for key, text in sorted(data.items()):
            where = f"ConfigMap/{name} {key}"
            try:
                dash = json.loads(text)
            except json.JSONDecodeError as e:
                problems.append(f"{where}: not JSON: {e}")
                continue
            count += 1
            if dash.get("uid") in uids:
                problems.append(f"{where}: uid {dash['uid']} also in {uids[dash['uid']]}")
            uids[dash.get("uid")] = where
            problems += dashboard_problems(where, dash, expressions)
    with open(expressions_out, "w", encoding="utf-8") as f:
        json.dump(expressions, f)
    if not problems:
        print(f"  {count} dashboard(s), {len(expressions)} queries left for the PromQL parser")
    return fail(problems)


def dashboard_metrics(docs):
    """Each dashboard query's metric names, with where it is."""
    found = []
    for name, data in dashboard_maps(docs).items():
        for key, text in data.items():
            expressions = []
            dashboard_problems(f"{name} {key}", json.loads(text), expressions)
            for e in expressions:
                found += [(e["where"], m) for m in re.findall(r"\b(uos_[a-z0-9_]+)", e["expr"])]
    return found


def rules_file(path, out_dir, tests):
    """promtool reads plain rule files, not PrometheusRule objects."""
    groups = [g for spec in rules(load_all(path)) for g in spec["groups"]]
    if not groups:
        return fail([f"{os.path.basename(path)}: no PrometheusRule groups"])
    with open(os.path.join(out_dir, "alerts.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False)
    with open(tests, encoding="utf-8") as f:
        text = f.read()
    if yaml.safe_load(text).get("rule_files") != ["alerts.yaml"]:
        return fail([f"{tests}: rule_files must be [alerts.yaml] (the file written here)"])
    with open(os.path.join(out_dir, os.path.basename(tests)), "w", encoding="utf-8") as f:
        f.write(text)
    print(f"  {sum(len(g['rules']) for g in groups)} rules in {len(groups)} groups -> "
          f"{os.path.join(out_dir, 'alerts.yaml')}")
    return 0


# How the service declares a metric: the name is the first argument of the prometheus crate's
# constructors (Opts::new, HistogramOpts::new, IntGauge::new, …).
METRIC_DECLARATION = re.compile(
    r'\b(?:Histogram)?(?:Int)?(?:Opts|Gauge|Counter)(?:Vec)?::new\(\s*"(uos_[a-z0-9_]+)"')


def registered_metrics(sources):
    names = set()
    for root, _, files in os.walk(sources):
        for f in files:
            if f.endswith(".rs"):
                with open(os.path.join(root, f), encoding="utf-8") as fh:
                    names.update(METRIC_DECLARATION.findall(fh.read()))
    return names


def undeclared(metric, known):
    """A histogram's series are its name with _bucket, _sum or _count."""
    return metric not in known and re.sub(r"_(bucket|sum|count)$", "", metric) not in known


def consistency(chart_file, kustomize_file, sources):
    chart, kust = load_all(chart_file), load_all(kustomize_file)
    a, b = os.path.basename(chart_file), os.path.basename(kustomize_file)
    problems = []
    wa, wb = workloads(chart), workloads(kust)
    if sorted(wa) != sorted(wb):
        problems.append(f"containers differ: {a} has {sorted(wa)}, {b} has {sorted(wb)}")
    for name in sorted(set(wa) & set(wb)):
        (pa, ca), (pb, cb) = wa[name], wb[name]
        for field in POD_FIELDS:
            if pa.get(field) != pb.get(field):
                problems.append(f"{name}: pod {field}: {a} and {b} differ")
        for field in CONTAINER_FIELDS:
            if ca.get(field) != cb.get(field):
                problems.append(f"{name}: {field}: {a} and {b} differ")
        env_a = sorted(ca.get("env", []), key=lambda e: e["name"])
        env_b = sorted(cb.get("env", []), key=lambda e: e["name"])
        if env_a != env_b:
            names_a = {e["name"] for e in env_a}
            names_b = {e["name"] for e in env_b}
            problems.append(f"{name}: env differs (only in {a}: {sorted(names_a - names_b)}, "
                            f"only in {b}: {sorted(names_b - names_a)}, or a value differs)")
        if mounts(ca) != mounts(cb):
            problems.append(f"{name}: volumeMounts differ between {a} and {b}")
        if volumes(pa) != volumes(pb):
            problems.append(f"{name}: volumes differ between {a} and {b}")
    if config_toml(chart) != config_toml(kust):
        problems.append(f"the ConfigMap (config.toml, allowed_signers) differs between {a} and {b}")
    ra, rb = rules(chart), rules(kust)
    if ra != rb:
        problems.append(f"the PrometheusRule specs differ between {a} and {b}")
    da, db = dashboard_maps(chart), dashboard_maps(kust)
    if da != db:
        problems.append(f"the dashboard ConfigMaps differ between {a} and {b} (names "
                        f"{sorted(da)} and {sorted(db)}, or their contents)")
    known = registered_metrics(sources)
    if not known:
        problems.append(f"no metric declarations found under {sources}")
    for spec in ra + rb:
        for group in spec["groups"]:
            for rule in group["rules"]:
                for metric in re.findall(r"\b(uos_[a-z0-9_]+)", rule["expr"]):
                    if undeclared(metric, known):
                        problems.append(f"{rule['alert']}: {metric} is not a metric the service "
                                        f"registers")
    for where, metric in dashboard_metrics(chart):
        if undeclared(metric, known):
            problems.append(f"{where}: {metric} is not a metric the service registers")
    if not problems:
        count = sum(len(g["rules"]) for spec in ra for g in spec["groups"])
        print(f"  {len(wa)} containers, the ConfigMap, {count} alert rules and {len(da)} "
              f"dashboard ConfigMap(s) agree between {a} and {b}")
    return fail(problems)


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "helm":
        return helm(*args)
    if cmd == "validate":
        return validate(args[0], args[1].split(","), args[2:])
    if cmd == "consistency":
        return consistency(*args)
    if cmd == "rules":
        return rules_file(*args)
    if cmd == "dashboards":
        return dashboards(*args)
    print(f"unknown command {cmd}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

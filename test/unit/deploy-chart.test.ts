// deploy/helm/coffer, rendered without a cluster: every object must be a valid Kubernetes object
// of a current API version (kubernetes-models' OpenAPI schemas), and the parts an operator
// relies on must be there — non-root pods, probes on Coffer's real health endpoints, secrets
// from Secrets, one migration step, anti-affinity, a disruption budget, a deny-by-default policy.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { HelmLite } from '../helpers/helm-lite.js';
import { ROUTES } from '@coffer/server/http/route-table';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CHART = path.join(ROOT, 'deploy/helm/coffer');

type Obj = Record<string, any>;

/** Kinds the chart may make, with the API version each must use (GA, served by Kubernetes >= 1.25). */
const API: Record<string, { apiVersion: string; module: string }> = {
  Deployment: { apiVersion: 'apps/v1', module: 'kubernetes-models/apps/v1/Deployment' },
  Service: { apiVersion: 'v1', module: 'kubernetes-models/v1/Service' },
  ServiceAccount: { apiVersion: 'v1', module: 'kubernetes-models/v1/ServiceAccount' },
  Secret: { apiVersion: 'v1', module: 'kubernetes-models/v1/Secret' },
  PodDisruptionBudget: { apiVersion: 'policy/v1', module: 'kubernetes-models/policy/v1/PodDisruptionBudget' },
  NetworkPolicy: { apiVersion: 'networking.k8s.io/v1', module: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy' },
  Ingress: { apiVersion: 'networking.k8s.io/v1', module: 'kubernetes-models/networking.k8s.io/v1/Ingress' },
  Job: { apiVersion: 'batch/v1', module: 'kubernetes-models/batch/v1/Job' },
};

/** Kubernetes reads YAML 1.1 (0400 is octal there), so the test does too. */
function parseObjects(text: string): Obj[] {
  return YAML.parseAllDocuments(text, { version: '1.1' })
    .map((d) => {
      if (d.errors.length) throw new Error(d.errors.map((e) => e.message).join('\n'));
      return d.toJS() as Obj | null;
    })
    .filter((o): o is Obj => o !== null);
}

function render(valuesFile: string, extra: Obj = {}): Obj[] {
  const values = { ...(YAML.parse(readFileSync(path.join(CHART, 'ci', valuesFile), 'utf8')) as Obj), ...extra };
  return [...HelmLite.renderChart(CHART, values).values()].flatMap(parseObjects);
}

async function validate(obj: Obj): Promise<void> {
  const api = API[obj.kind];
  if (!api) throw new Error(`unexpected kind ${obj.kind}`);
  expect(obj.apiVersion).toBe(api.apiVersion);
  const mod = (await import(api.module)) as Record<string, new (o: Obj) => { validate(): void }>;
  const Model = mod[obj.kind]!;
  new Model(obj).validate();
}

const one = (objs: Obj[], kind: string, component?: string): Obj => {
  const found = objs.filter((o) => o.kind === kind && (!component || o.metadata.labels?.['app.kubernetes.io/component'] === component));
  expect(found).toHaveLength(1);
  return found[0]!;
};

/** Does an httpGet probe path (with its query) name a real GET route of the server? */
function isRealRoute(probePath: string): boolean {
  const [p] = probePath.split('?');
  return ROUTES.some((r) => r.template === p && r.method === 'GET');
}

const valuesFiles = readdirSync(path.join(CHART, 'ci')).filter((f) => f.endsWith('-values.yaml'));

describe('Helm chart deploy/helm/coffer', () => {
  it('has a values file per case under ci/', () => {
    expect(valuesFiles).toEqual(expect.arrayContaining(['default-values.yaml', 'full-values.yaml']));
  });

  describe.each(valuesFiles)('rendered with ci/%s', (valuesFile) => {
    const objs = render(valuesFile);

    it('makes only valid Kubernetes objects of current API versions, each named and labelled', async () => {
      expect(objs.length).toBeGreaterThanOrEqual(6);
      for (const o of objs) {
        await validate(o);
        expect(o.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
        expect(o.metadata.labels['app.kubernetes.io/instance']).toBe('rel');
      }
      const names = objs.map((o) => `${o.kind}/${o.metadata.name}`);
      expect(new Set(names).size).toBe(names.length);
    });

    it('runs every pod as the image user, without privileges, on a read-only root filesystem', () => {
      const pods = objs.filter((o) => o.kind === 'Deployment' || o.kind === 'Job').map((o) => o.spec.template.spec);
      expect(pods).toHaveLength(2);
      for (const pod of pods) {
        expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } });
        expect(pod.automountServiceAccountToken).toBe(false);
        for (const c of pod.containers) {
          expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } });
          // A read-only root needs a writable /tmp.
          expect(c.volumeMounts.map((m: Obj) => m.mountPath)).toContain('/tmp');
        }
      }
    });

    it('probes real endpoints: start-up and liveness on health (sealed is alive), readiness on /v1/sys/ready', () => {
      const c = one(objs, 'Deployment').spec.template.spec.containers[0];
      for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        expect(isRealRoute(c[probe].httpGet.path)).toBe(true);
        expect(c.ports.map((p: Obj) => p.name)).toContain(c[probe].httpGet.port);
      }
      expect(c.startupProbe.httpGet.path).toBe('/v1/sys/health?sealedcode=200&uninitcode=200');
      expect(c.livenessProbe.httpGet.path).toBe('/v1/sys/health?sealedcode=200&uninitcode=200');
      expect(c.readinessProbe.httpGet.path).toBe('/v1/sys/ready');
      const env = Object.fromEntries(c.env.map((e: Obj) => [e.name, e]));
      // The probe scheme follows TLS.
      expect(c.readinessProbe.httpGet.scheme).toBe(env.COFFER_TLS_CERT_FILE ? 'HTTPS' : 'HTTP');
      if (!env.COFFER_TLS_CERT_FILE) expect(env.COFFER_ALLOW_INSECURE_HTTP.value).toBe('true');
    });

    it('takes the database URL (and a PKCS#11 PIN) from Secrets, never from a plain value', () => {
      const deployment = one(objs, 'Deployment');
      const c = deployment.spec.template.spec.containers[0];
      const env = Object.fromEntries(c.env.map((e: Obj) => [e.name, e]));
      expect(env.COFFER_DATABASE_URL.value).toBeUndefined();
      const secretName = env.COFFER_DATABASE_URL.valueFrom.secretKeyRef.name;
      expect(env.COFFER_PKCS11_PIN).toBeUndefined();
      if (env.COFFER_SEAL.value === 'pkcs11') {
        const pinDir = path.dirname(env.COFFER_PKCS11_PIN_FILE.value);
        const mount = c.volumeMounts.find((m: Obj) => m.mountPath === pinDir);
        const volume = deployment.spec.template.spec.volumes.find((v: Obj) => v.name === mount.name);
        expect(volume.secret.secretName).toBe('coffer-hsm-pin');
        expect(volume.secret.defaultMode).toBe(0o400);
        const moduleDir = path.dirname(env.COFFER_PKCS11_MODULE.value);
        const moduleMount = c.volumeMounts.find((m: Obj) => m.mountPath === moduleDir);
        expect(moduleMount.readOnly).toBe(true);
        expect(deployment.spec.template.spec.volumes.find((v: Obj) => v.name === moduleMount.name).hostPath).toEqual({ path: '/opt/hsm', type: 'Directory' });
      }
      // A chart-made Secret exists before the migration hook that needs it.
      const madeSecret = objs.find((o) => o.kind === 'Secret');
      if (madeSecret) {
        expect(madeSecret.metadata.name).toBe(secretName);
        expect(Number(madeSecret.metadata.annotations['helm.sh/hook-weight'])).toBeLessThan(Number(one(objs, 'Job').metadata.annotations['helm.sh/hook-weight']));
      } else expect(secretName).toBe('coffer-db');
    });

    it('migrates in a pre-install/pre-upgrade Job that the Service never sends traffic to', () => {
      const job = one(objs, 'Job', 'migrate');
      expect(job.metadata.annotations['helm.sh/hook']).toBe('pre-install,pre-upgrade');
      const c = job.spec.template.spec.containers[0];
      expect(c.args).toEqual(['migrate']);
      expect(c.env.find((e: Obj) => e.name === 'COFFER_DATABASE_URL').valueFrom.secretKeyRef).toBeDefined();
      const service = one(objs, 'Service');
      const selects = (labels: Obj) => Object.entries(service.spec.selector).every(([k, v]) => labels[k] === v);
      expect(selects(job.spec.template.metadata.labels)).toBe(false);
      expect(selects(one(objs, 'Deployment').spec.template.metadata.labels)).toBe(true);
    });

    it('spreads servers over nodes and lets at most one be disrupted at a time', () => {
      const deployment = one(objs, 'Deployment');
      const anti = deployment.spec.template.spec.affinity.podAntiAffinity;
      const term = anti.requiredDuringSchedulingIgnoredDuringExecution?.[0] ?? anti.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm;
      expect(term.labelSelector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
      const pdb = one(objs, 'PodDisruptionBudget');
      expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
      expect(pdb.spec.maxUnavailable).toBe(1);
      expect(deployment.spec.strategy.rollingUpdate).toEqual({ maxUnavailable: 0, maxSurge: 1 });
      expect(deployment.spec.template.spec.serviceAccountName).toBe(one(objs, 'ServiceAccount').metadata.name);
    });

    it('denies other traffic: ingress to the API and metrics ports only, egress to DNS, PostgreSQL and HTTPS', () => {
      const policy = one(objs, 'NetworkPolicy');
      expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
      const inPorts = policy.spec.ingress.flatMap((r: Obj) => r.ports.map((p: Obj) => p.port));
      expect(inPorts.sort()).toEqual(['api', 'metrics']);
      const outPorts = policy.spec.egress.flatMap((r: Obj) => r.ports.map((p: Obj) => p.port));
      expect(outPorts).toEqual(expect.arrayContaining([53, 5432, 443]));
      // The policy covers the migration Job's pods too (egress to PostgreSQL).
      const job = one(objs, 'Job');
      expect(Object.entries(policy.spec.podSelector.matchLabels).every(([k, v]) => job.spec.template.metadata.labels[k] === v)).toBe(true);
    });
  });

  it('wires the optional parts when switched on: ingress to the service port, hard anti-affinity', () => {
    const objs = render('full-values.yaml');
    const ingress = one(objs, 'Ingress');
    const backend = ingress.spec.rules[0].http.paths[0].backend.service;
    expect(backend).toEqual({ name: one(objs, 'Service').metadata.name, port: { name: 'api' } });
    expect(ingress.spec.tls[0].secretName).toBe('coffer-ingress-tls');
    const anti = one(objs, 'Deployment').spec.template.spec.affinity.podAntiAffinity;
    expect(anti.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey).toBe('topology.kubernetes.io/zone');
    expect(one(objs, 'ServiceAccount').metadata.name).toBe('coffer-sa');
  });

  it('refuses to render without a database, or a PKCS#11 seal without its module or PIN', () => {
    expect(() => render('default-values.yaml', { database: { existingSecret: '' } })).toThrow(/database.existingSecret or database.url is required/);
    expect(() => render('default-values.yaml', { seal: { type: 'pkcs11', pkcs11: { tokenLabel: 't', pinSecret: { name: 'p' } } } })).toThrow(/seal.pkcs11.module is required/);
    expect(() => render('default-values.yaml', { seal: { type: 'pkcs11', pkcs11: { module: '/m.so', tokenLabel: 't', pinSecret: { name: '' } } } })).toThrow(
      /seal.pkcs11.pinSecret.name is required/,
    );
  });

  // The renderer above is a subset of Helm's; where a real helm is at hand, both must agree.
  const helm = process.env.COFFER_HELM ?? ['/usr/local/bin/helm', '/usr/bin/helm'].find((p) => existsSync(p));
  it(`renders as helm does${helm ? ` (${helm})` : ' (no helm here: compared only where one is installed)'}`, () => {
    if (!helm) return;
    for (const f of valuesFiles) {
      const real = execFileSync(helm, ['template', 'rel', CHART, '-f', path.join(CHART, 'ci', f)], { encoding: 'utf8' });
      const byKind = (objs: Obj[]) => objs.sort((a, b) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`));
      expect(byKind(render(f))).toEqual(byKind(parseObjects(real)));
    }
  });
});

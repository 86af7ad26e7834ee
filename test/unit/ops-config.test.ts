// Operations pieces that need no server: route templates (metric labels, request logs),
// the operations settings, and the rule that plain HTTP stays on loopback.
import { ConfigError, loadConfig, parseHostPort } from '@coffer/server/config';
import { ROUTE_TEMPLATES, routeTemplate } from '@coffer/server/http/route-template';
import { insecureListenProblem, isLoopbackHost } from '@coffer/server/ops/tls';

describe('route templates', () => {
  it.each([
    ['/v1/secrets/payments-prod/db/password', '/v1/secrets/:ns/:path'],
    ['/v1/secrets/payments-prod/db/password?version=3', '/v1/secrets/:ns/:path'],
    ['/v1/secrets/payments-prod/db/password:versions', '/v1/secrets/:ns/:path:versions'],
    ['/v1/secrets/payments-prod/db/password:rollback', '/v1/secrets/:ns/:path:rollback'],
    ['/v1/secrets/payments-prod/db/password:purge', '/v1/secrets/:ns/:path:purge'],
    ['/v1/secrets/payments-prod/db/password:steal-everything', '/v1/secrets/:ns/:path:*'],
    ['/v1/secrets/payments-prod/db/', '/v1/secrets/:ns/:folder/'],
    ['/v1/secrets/payments-prod', '/v1/secrets/:ns/:folder/'],
    ['/v1/secrets/payments-prod/?recursive=true', '/v1/secrets/:ns/:folder/'],
    ['/v1/bulk/payments-prod/db/', '/v1/bulk/:ns/:folder'],
    ['/v1/namespaces', '/v1/namespaces'],
    ['/v1/namespaces?limit=5', '/v1/namespaces'],
    ['/v1/namespaces/payments-prod', '/v1/namespaces/:name'],
    ['/v1/namespaces/payments-prod/extra', 'unmatched'],
    ['/v1/sys/seal-status', '/v1/sys/seal-status'],
    ['/v1/sys/health?sealedcode=200', '/v1/sys/health'],
    ['/v1/sys/ready', '/v1/sys/ready'],
    ['/v1/sys/metrics', '/v1/sys/metrics'],
    ['/v1/sys/audit/verify', '/v1/sys/audit/verify'],
    ['/v1/sys/whatever-a-scanner-tries', 'unmatched'],
    ['/v1/auth/token/lookup-self', '/v1/auth/token/lookup-self'],
    ['/v1/auth/token/someone-else', 'unmatched'],
    ['/v2/anything', 'unmatched'],
    ['/', 'unmatched'],
    ['/.env', 'unmatched'],
  ])('%s → %s', (url, template) => {
    expect(routeTemplate(url)).toBe(template);
  });

  it('names each template of the route table for a request it matches', () => {
    for (const template of ROUTE_TEMPLATES) {
      const url = template.replace(':ns', 'payments-prod').replace(/:folder\/?/, 'db/').replace(':path', 'db/password').replace(':name', 'x');
      expect({ url, template: routeTemplate(url) }).toEqual({ url, template });
    }
    expect(ROUTE_TEMPLATES.length).toBe(new Set(ROUTE_TEMPLATES).size);
  });

  it('never contains a namespace, a path, an action or a query value', () => {
    for (const url of [
      '/v1/secrets/acme-payroll/hr/salaries:versions?x=acme-payroll',
      '/v1/secrets/acme-payroll/hr/salaries:acme-payroll',
      '/v1/bulk/acme-payroll/hr/',
      '/v1/namespaces/acme-payroll',
      '/v1/sys/acme-payroll',
    ]) {
      const t = routeTemplate(url);
      expect(t).not.toMatch(/acme|payroll|salaries|hr\b/);
    }
  });
});

describe('operations settings', () => {
  const load = (env: Record<string, string>) => loadConfig(env);

  it('has quiet, safe defaults', () => {
    const c = load({});
    expect(c).toMatchObject({ requestLog: false, allowInsecureHttp: false, shutdownTimeoutSeconds: 10, requestTimeoutSeconds: 30 });
    expect(c.tlsCertFile).toBeUndefined();
    expect(c.metricsListen).toBeUndefined();
  });

  it('reads every operations variable from the environment', () => {
    const c = load({
      COFFER_TLS_CERT_FILE: '/etc/coffer/tls.crt',
      COFFER_TLS_KEY_FILE: '/etc/coffer/tls.key',
      COFFER_TLS_CLIENT_CA_FILE: '/etc/coffer/clients.pem',
      COFFER_ALLOW_INSECURE_HTTP: 'true',
      COFFER_METRICS_LISTEN: '127.0.0.1:9102',
      COFFER_REQUEST_LOG: 'true',
      COFFER_SHUTDOWN_TIMEOUT_SECONDS: '25',
      COFFER_REQUEST_TIMEOUT_SECONDS: '5',
    });
    expect(c).toMatchObject({
      tlsCertFile: '/etc/coffer/tls.crt',
      tlsKeyFile: '/etc/coffer/tls.key',
      tlsClientCaFile: '/etc/coffer/clients.pem',
      allowInsecureHttp: true,
      metricsListen: '127.0.0.1:9102',
      requestLog: true,
      shutdownTimeoutSeconds: 25,
      requestTimeoutSeconds: 5,
    });
  });

  it.each([
    [{ COFFER_TLS_CERT_FILE: '/c.pem' }, /tlsCertFile and tlsKeyFile go together/],
    [{ COFFER_TLS_KEY_FILE: '/k.pem' }, /tlsCertFile and tlsKeyFile go together/],
    [{ COFFER_TLS_CLIENT_CA_FILE: '/ca.pem' }, /tlsClientCaFile needs TLS/],
    [{ COFFER_METRICS_LISTEN: '9102' }, /metricsListen: metrics listen address must be host:port/],
    [{ COFFER_METRICS_LISTEN: '127.0.0.1:70000' }, /metricsListen/],
    [{ COFFER_SHUTDOWN_TIMEOUT_SECONDS: '-1' }, /shutdownTimeoutSeconds/],
    [{ COFFER_REQUEST_LOG: 'maybe' }, /requestLog/],
    [{ COFFER_REQUEST_TIMEOUT_SECONDS: '0' }, /requestTimeoutSeconds/],
    [{ COFFER_REQUEST_TIMEOUT_SECONDS: '3601' }, /requestTimeoutSeconds/],
  ])('refuses %j', (env, message) => {
    expect(() => load(env)).toThrow(ConfigError);
    expect(() => load(env)).toThrow(message);
  });

  it('parses host:port, IPv6 in brackets', () => {
    expect(parseHostPort('127.0.0.1:9102')).toEqual({ host: '127.0.0.1', port: 9102 });
    expect(parseHostPort('[::1]:9102')).toEqual({ host: '::1', port: 9102 });
    expect(parseHostPort('localhost:0')).toEqual({ host: 'localhost', port: 0 });
    for (const bad of ['', ':9102', '::1:9102', '127.0.0.1', '127.0.0.1:', 'a b:1', '127.0.0.1:65536']) expect(parseHostPort(bad)).toBeNull();
  });
});

describe('plain HTTP off loopback', () => {
  const config = (env: Record<string, string>) => loadConfig(env);

  it('is refused without TLS, naming the two ways out', () => {
    const problem = insecureListenProblem(config({ COFFER_HOST: '0.0.0.0' }));
    expect(problem).toMatch(/refusing to serve plain HTTP on the non-loopback address 0\.0\.0\.0/);
    expect(problem).toMatch(/COFFER_TLS_CERT_FILE/);
    expect(problem).toMatch(/COFFER_ALLOW_INSECURE_HTTP=true/);
  });

  it('is allowed on loopback, with TLS, or when explicitly allowed', () => {
    expect(insecureListenProblem(config({}))).toBeNull();
    expect(insecureListenProblem(config({ COFFER_HOST: 'localhost', COFFER_DEV: 'true' }))).toBeNull();
    expect(insecureListenProblem(config({ COFFER_HOST: '::1' }))).toBeNull();
    expect(insecureListenProblem(config({ COFFER_HOST: '0.0.0.0', COFFER_ALLOW_INSECURE_HTTP: 'true' }))).toBeNull();
    expect(insecureListenProblem(config({ COFFER_HOST: '10.0.0.5', COFFER_TLS_CERT_FILE: '/c', COFFER_TLS_KEY_FILE: '/k' }))).toBeNull();
  });

  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', 'LOCALHOST', '::1', '::ffff:127.0.0.1']) expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'coffer.internal', '128.0.0.1']) expect(isLoopbackHost(h)).toBe(false);
  });
});

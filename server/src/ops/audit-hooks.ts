/**
 * What operations (metrics, readiness) read from the audit log, found by shape
 * on `core.audit` so this code works whether or not the core carries an audit
 * log and does not depend on server/src/audit. Flushing the log at shutdown
 * is core.close()'s job.
 */

/** The parts of the audit log operations read; each may be absent. */
export interface AuditOpsView {
  /** Entries accepted but not yet written to their sinks. */
  readonly queueDepth?: unknown;
  /** False while a sink is stuck (requests are refused until it recovers). */
  readonly healthy?: unknown;
  /** False when auditing is turned off. */
  readonly enabled?: unknown;
}

function auditOf(core: object): AuditOpsView | undefined {
  if (!('audit' in core)) return undefined;
  const audit = core.audit;
  return typeof audit === 'object' && audit !== null ? (audit as AuditOpsView) : undefined;
}

/** Entries waiting to be written, or undefined when there is no audit log (or it does not say). */
export function auditQueueDepth(core: object): number | undefined {
  const depth = auditOf(core)?.queueDepth;
  return typeof depth === 'number' ? depth : undefined;
}

/** Whether the audit log can record requests: undefined when there is none, it is off, or it does not say. */
export function auditHealthy(core: object): boolean | undefined {
  const audit = auditOf(core);
  if (!audit || audit.enabled === false) return undefined;
  return typeof audit.healthy === 'boolean' ? audit.healthy : undefined;
}

/**
 * A database URL fit for a log line: the password replaced by `***`. One
 * implementation for the server's start-up log and the test runner's banner.
 */
export function redactUrl(url: string, unparseable = '(unparseable URL)'): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return unparseable;
  }
}

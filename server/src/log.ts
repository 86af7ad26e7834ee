/** Structured JSON logs. Anything secret-shaped is redacted even if a caller slips. */
import { pino, type Logger } from 'pino';

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'coffer' },
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers["x-coffer-token"]',
          'req.headers.cookie',
          'headers.authorization',
          'headers["x-coffer-token"]',
          '*.headers.authorization',
          '*.headers["x-coffer-token"]',
          '*.private_key',
          '*.client_token',
          '*.token',
          '*.root_token',
          '*.share',
          '*.shares',
          '*.data',
          '*.password',
          '*.key',
          '*.secret',
          '*.pin',
          '*.pkcs11Pin',
          '*.recovery_shares',
          '*.encrypted_key_material',
          '*.wrapped_key_material',
        ],
        censor: '[redacted]',
      },
    },
    destination as pino.DestinationStream | undefined,
  );
}

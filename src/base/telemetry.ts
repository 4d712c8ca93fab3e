import { TenantSecretsError } from './errors.js';

/**
 * One finished operation, as the logger hook and telemetry see it. Never holds a value, a key, a
 * KEK or a key bundle: the operation's name, its outcome, the error code and how long it took.
 */
export interface OperationEvent {
  /** The library method, e.g. `get`, `set`, `rotateMasterKey`, `sealAudit`. */
  operation: string;
  outcome: 'success' | 'failure';
  /** The error's stable code when the operation failed (`NOT_FOUND`, `DATABASE_UNAVAILABLE`, ...). */
  errorCode?: string;
  durationMs: number;
  /** For reads served from the in-process cache. */
  cached?: boolean;
}

/** Receives every operation event (e.g. to forward to pino, winston or console). Must not throw. */
export type OperationLogger = (event: OperationEvent) => void;

export interface TelemetryOptions {
  /**
   * OpenTelemetry: `'auto'` (default) uses `@opentelemetry/api` when it is installed (a no-op
   * otherwise, and a no-op until an SDK is registered); `false` turns it off.
   */
  openTelemetry?: 'auto' | false;
  /** Called after every operation. */
  logger?: OperationLogger;
}

export interface Telemetry {
  /** Runs one operation: a span, counters and a duration histogram, then the logger hook. */
  run<T>(operation: string, fn: () => Promise<T>, extra?: { cached?: boolean }): Promise<T>;
  /** Reports an event that is not a call of the caller's (background sealing). */
  report(event: OperationEvent): void;
}

// The parts of @opentelemetry/api used here, typed structurally so the package stays optional.
interface OtelSpan {
  setAttribute(key: string, value: string | number | boolean): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  end(): void;
}
interface OtelApi {
  trace: {
    getTracer(
      name: string,
      version?: string,
    ): { startActiveSpan<T>(name: string, fn: (span: OtelSpan) => T): T };
  };
  metrics: {
    getMeter(
      name: string,
      version?: string,
    ): {
      createCounter(
        name: string,
        options?: { description?: string; unit?: string },
      ): {
        add(value: number, attributes?: Record<string, string>): void;
      };
      createHistogram(
        name: string,
        options?: { description?: string; unit?: string },
      ): {
        record(value: number, attributes?: Record<string, string>): void;
      };
    };
  };
  SpanStatusCode: { OK: number; ERROR: number };
}

interface Instruments {
  api: OtelApi;
  tracer: ReturnType<OtelApi['trace']['getTracer']>;
  operations: ReturnType<ReturnType<OtelApi['metrics']['getMeter']>['createCounter']>;
  errors: ReturnType<ReturnType<OtelApi['metrics']['getMeter']>['createCounter']>;
  duration: ReturnType<ReturnType<OtelApi['metrics']['getMeter']>['createHistogram']>;
}

const SCOPE = 'tenant-secrets';

let otel: Promise<Instruments | null> | undefined;

function loadOtel(): Promise<Instruments | null> {
  otel ??= import('@opentelemetry/api' as string)
    .then((mod: unknown) => {
      // The ES module namespace has every export; its `default` (CommonJS interop) lacks the enums.
      const ns = mod as Partial<OtelApi> & { default?: Partial<OtelApi> };
      const api = (typeof ns.trace?.getTracer === 'function' ? ns : ns.default) as OtelApi;
      if (typeof api?.trace?.getTracer !== 'function' || typeof api.metrics?.getMeter !== 'function')
        return null;
      const meter = api.metrics.getMeter(SCOPE);
      return {
        api,
        tracer: api.trace.getTracer(SCOPE),
        operations: meter.createCounter('tenant_secrets.operations', {
          description: 'Operations, by operation and outcome',
        }),
        errors: meter.createCounter('tenant_secrets.errors', {
          description: 'Failed operations, by operation and error code',
        }),
        duration: meter.createHistogram('tenant_secrets.operation.duration', {
          description: 'Operation duration, including the database round trip and the encryption in pgcrypto',
          unit: 'ms',
        }),
      };
    })
    .catch(() => null);
  return otel;
}

function errorCode(error: unknown): string {
  return error instanceof TenantSecretsError ? error.code : 'UNEXPECTED';
}

export function createTelemetry(options: TelemetryOptions = {}): Telemetry {
  const useOtel = options.openTelemetry !== false;
  const logger = options.logger;
  const emit = (event: OperationEvent, instruments: Instruments | null) => {
    if (instruments) {
      const attrs: Record<string, string> = {
        'tenant_secrets.operation': event.operation,
        'tenant_secrets.outcome': event.outcome,
      };
      instruments.operations.add(1, attrs);
      instruments.duration.record(event.durationMs, attrs);
      if (event.errorCode) {
        instruments.errors.add(1, {
          'tenant_secrets.operation': event.operation,
          'tenant_secrets.error_code': event.errorCode,
        });
      }
    }
    if (logger) {
      try {
        logger(event);
      } catch {
        // A failing logger must not turn a successful operation into a failure.
      }
    }
  };
  return {
    async run<T>(operation: string, fn: () => Promise<T>, extra: { cached?: boolean } = {}): Promise<T> {
      const instruments = useOtel ? await loadOtel() : null;
      const started = performance.now();
      const finish = (span: OtelSpan | undefined, error?: unknown) => {
        const event: OperationEvent = {
          operation,
          outcome: error === undefined ? 'success' : 'failure',
          durationMs: performance.now() - started,
          ...(error !== undefined && { errorCode: errorCode(error) }),
          ...(extra.cached && { cached: true }),
        };
        if (span && instruments) {
          span.setAttribute('tenant_secrets.outcome', event.outcome);
          if (event.errorCode) {
            span.setAttribute('tenant_secrets.error_code', event.errorCode);
            span.setStatus({ code: instruments.api.SpanStatusCode?.ERROR ?? 2, message: event.errorCode });
          }
          span.end();
        }
        emit(event, instruments);
      };
      if (!instruments) {
        try {
          const result = await fn();
          finish(undefined);
          return result;
        } catch (error) {
          finish(undefined, error);
          throw error;
        }
      }
      return instruments.tracer.startActiveSpan(`tenant_secrets.${operation}`, async (span) => {
        span.setAttribute('tenant_secrets.operation', operation);
        span.setAttribute('db.system', 'postgresql');
        if (extra.cached) span.setAttribute('tenant_secrets.cached', true);
        try {
          const result = await fn();
          finish(span);
          return result;
        } catch (error) {
          finish(span, error);
          throw error;
        }
      });
    },
    report(event) {
      if (!useOtel) return emit(event, null);
      void loadOtel().then((instruments) => emit(event, instruments));
    },
  };
}

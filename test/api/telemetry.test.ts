import { metrics, trace } from '@opentelemetry/api';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { beforeAll, describe, expect, it } from 'vitest';
import { type OperationEvent, SecretNotFoundError } from '../../src/index.js';
import { setupManager, TEST_KEY } from '../support/db.js';

// Registered before the first operation of this file (each test file runs in its own process).
const spans = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 60_000 });
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));

const VALUE = 'sk_live_telemetry_9f3b1c7e';

describe('observability', () => {
  const events: OperationEvent[] = [];
  let manager: Awaited<ReturnType<typeof setupManager>>['manager'];
  beforeAll(async () => {
    ({ manager } = await setupManager({ logger: (event) => events.push(event), auditSealIntervalMs: 0 }));
  });

  it('one span per operation with operation, outcome, error code; metrics by operation, outcome and error code', async () => {
    spans.reset();
    await manager.set('otel-tenant', 'stripe/api-key', VALUE);
    expect(await manager.get('otel-tenant', 'stripe/api-key')).toBe(VALUE);
    await expect(manager.rotate('otel-tenant', 'missing', VALUE)).rejects.toBeInstanceOf(SecretNotFoundError);

    const finished = spans.getFinishedSpans();
    const byName = (name: string) => finished.filter((s) => s.name === name);
    expect(byName('tenant_secrets.set')).toHaveLength(1);
    expect(byName('tenant_secrets.get')).toHaveLength(1);
    const rotate = byName('tenant_secrets.rotate')[0];
    expect(rotate?.attributes).toMatchObject({
      'tenant_secrets.operation': 'rotate',
      'tenant_secrets.outcome': 'failure',
      'tenant_secrets.error_code': 'NOT_FOUND',
      'db.system': 'postgresql',
    });
    expect(rotate?.status.code).toBe(2);
    expect(byName('tenant_secrets.get')[0]?.attributes['tenant_secrets.outcome']).toBe('success');
    expect(byName('tenant_secrets.get')[0]?.duration[0] ?? -1).toBeGreaterThanOrEqual(0);

    await reader.forceFlush();
    const exported = metricExporter
      .getMetrics()
      .flatMap((m) => m.scopeMetrics)
      .flatMap((s) => s.metrics);
    const find = (name: string) =>
      exported
        .filter((m) => m.descriptor.name === name)
        .flatMap((m) => m.dataPoints as { attributes: Record<string, unknown>; value: unknown }[]);
    const ops = find('tenant_secrets.operations');
    expect(
      ops.find(
        (p) =>
          p.attributes['tenant_secrets.operation'] === 'set' &&
          p.attributes['tenant_secrets.outcome'] === 'success',
      )?.value,
    ).toBe(1);
    const errors = find('tenant_secrets.errors');
    expect(errors.find((p) => p.attributes['tenant_secrets.error_code'] === 'NOT_FOUND')?.value).toBe(1);
    expect(find('tenant_secrets.operation.duration').length).toBeGreaterThan(0);
  });

  it('the logger hook gets every operation, never a value', () => {
    expect(events.map((e) => e.operation)).toEqual(
      expect.arrayContaining(['migrate', 'set', 'get', 'rotate']),
    );
    expect(events.find((e) => e.operation === 'rotate')).toMatchObject({
      outcome: 'failure',
      errorCode: 'NOT_FOUND',
    });
  });

  it('never exports a value, a key or a KEK (every span and metric scanned)', async () => {
    const bundleHex = manager.tenantKeyBundle('otel-tenant').bytes.toString('hex');
    const kek = bundleHex.slice(2 * (2 + 19), 2 * (2 + 19 + 64));
    await reader.forceFlush();
    const text = JSON.stringify([
      spans
        .getFinishedSpans()
        .map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })),
      metricExporter.getMetrics(),
      events,
    ]);
    for (const secret of [VALUE, Buffer.from(VALUE).toString('hex'), TEST_KEY, kek, bundleHex]) {
      expect(text).not.toContain(secret);
    }
    // Positive control: the tenant id is not secret and the scan sees attribute text.
    expect(text).toContain('tenant_secrets.operation');
  });

  it('errors keep a cause for adapters, without the server text', async () => {
    const error = await manager
      .get('otel-tenant', 'x', { version: 2 as never, versoin: 1 } as never)
      .catch((e: unknown) => e);
    expect((error as { code?: string }).code).toBe('INVALID_INPUT');
  });
});

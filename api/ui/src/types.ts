// The shapes of the API's JSON (api/openapi.yaml), as far as the dashboard reads them.

export interface GraphNode {
  id: string;
  service: string;
  version?: string;
  rps: number;
  errorRate: number;
}

export type ClassCounts = Record<string, number>;

export interface GraphEdge {
  source: string;
  target: string;
  protocol: string;
  requests: number;
  errors: number;
  bytes: number;
  rps: number;
  errorRate: number;
  byClass: ClassCounts;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}

export interface Graph {
  generatedAt: string;
  window: string;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

/** What boot.ts started before the app loaded (window.__signalboxBoot). */
export interface Boot {
  /** the window it asked for */
  window: string;
  /** the service graph and the version graph (null: not answered) */
  graphs: Promise<(Graph | null)[]>;
  /** its milestones, ms after navigation start */
  timings: Record<string, number>;
}

export type Phase =
  | "Pending" | "Progressing" | "Paused" | "Promoting" | "Succeeded"
  | "RollingBack" | "RolledBack" | "Aborted" | "Failed";

export interface Counts { requests: number; errors: number }

export interface AnalysisStats {
  looks: number;
  baseline: Counts;
  candidate: Counts;
  baselineErrorRate: number;
  candidateErrorRate: number;
  share: number;
  logLambda: number;
  threshold: number;
  alpha: number;
  rateRatio?: number;
  latencyRatio?: number;
}

export interface Decision {
  verdict: string;
  check?: string;
  reason: string;
  stats: AnalysisStats;
}

export interface RolloutEvent {
  at: string;
  kind: "phase" | "step" | "command" | "decision";
  from?: Phase;
  to?: Phase;
  step: number;
  candidateWeight: number;
  actor?: string;
  reason: string;
  stats?: Decision;
}

export interface RolloutSpec {
  service: string;
  strategy: "canary" | "bluegreen";
  baseline: string;
  candidate: string;
  steps?: number[];
  stepInterval?: string;
  gates?: number[];
  previewHeader?: string;
  postPromotionWindow?: string;
  mirrorPercent?: number;
  analysis?: { alpha?: number; minRequests?: number; maxErrorRate?: number; maxLatencyRatio?: number };
}

export interface SequentialTestState {
  looks: number;
  baseline: Counts;
  candidate: Counts;
  comparedBaseline: Counts;
  comparedCandidate: Counts;
  expectedCandidateErrors: number;
  prior?: { theta: number; weight: number }[];
  logLR?: number[];
}

export interface Rollout {
  id: string;
  spec: RolloutSpec;
  phase: Phase;
  step: number;
  mirroring?: boolean;
  atGate?: boolean;
  stepStartedAt: string;
  stepRequests: number;
  reason?: string;
  analysis: { test: SequentialTestState };
  history: RolloutEvent[];
  /** Events dropped between the first two and the latest (the history keeps 100). */
  historyDropped?: number;
  createdAt: string;
  updatedAt: string;
}

export interface TypeStatus {
  subscribed?: string[];
  sentVersion?: string;
  sentAt?: string;
  ackedVersion?: string;
  ackedAt?: string;
  pushes: number;
  nacks: number;
  lastNack?: { version: string; message: string; at: string };
}

export interface ClientStatus {
  streamId: number;
  nodeId: string;
  nodeCluster?: string;
  protocol: string;
  connectedAt: string;
  types: Record<string, TypeStatus>;
}

export interface SidecarStatus {
  node: string;
  service: string;
  version?: string;
  snapshot?: string;
  problems?: string[];
}

export interface APIError { error: string; hint?: string }

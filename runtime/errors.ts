// The runtime's errors are the transports' (one base class, a stable code per subclass): see
// transport/errors.ts.
export * from '../transport/errors.js';

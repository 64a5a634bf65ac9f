/**
 * The main thread's ends of the MessagePorts it hands to worker threads (`weir run --workers`):
 * the in-process bus and the shared store each keep one per worker and find it again, by the
 * worker's end, when that worker exits.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads'

export class WorkerPorts<M> {
  /** This end of each worker's port, by the worker's end. */
  private readonly ends = new Map<MessagePort, MessagePort>()

  /** A new channel: `onMessage` hears what the worker sends; pass the returned end to the worker (in its data and transfer list). */
  open(onMessage: (port: MessagePort, message: M) => void): MessagePort {
    const { port1, port2 } = new MessageChannel()
    this.ends.set(port2, port1)
    port1.on('message', (m: M) => onMessage(port1, m))
    return port2
  }

  /** Forgets and returns this end of a worker's port (undefined if already taken). */
  take(workerEnd: MessagePort): MessagePort | undefined {
    const port = this.ends.get(workerEnd)
    this.ends.delete(workerEnd)
    return port
  }

  /** Closes every port still open. */
  closeAll(): void {
    for (const port of this.ends.values()) port.close()
    this.ends.clear()
  }
}

/**
 * `socket-multiplexer/ws`: WebSocket clients, kept out of the core entry point so that only programs that use
 * it need `ws` installed (an optional peer dependency, 8.x).
 */
export {
  websocket,
  WebSocketTransport,
  WebSocketConnection,
  CLOSE_CODES,
  type WebSocketOptions,
  type CompressionOptions,
} from './transport/websocket';

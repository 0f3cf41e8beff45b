import { MemoryHub } from '../../lib';
import { describeBusContract } from './bus.contract';

describeBusContract('MemoryBus', async () => {
  const hub = new MemoryHub();
  return { bus: (channel) => hub.bus(channel, 16 * 1024 * 1024), stop: async () => undefined };
});

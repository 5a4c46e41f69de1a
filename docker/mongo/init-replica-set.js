// Initiates the compose stack's replica set rs0 (mongo1 preferred as
// primary) unless it already is, then waits up to 60 s for a primary.
// Run by the mongo-init service: mongosh --host mongo1 this-file.
try {
  rs.status();
  print("mongo-init: rs0 already initiated");
} catch (error) {
  if (error.codeName !== "NotYetInitialized") {
    throw error;
  }
  rs.initiate({
    _id: "rs0",
    members: [
      { _id: 0, host: "mongo1:27017", priority: 2 },
      { _id: 1, host: "mongo2:27017", priority: 1 },
      { _id: 2, host: "mongo3:27017", priority: 1 },
    ],
  });
  print("mongo-init: rs0 initiated");
}
const deadline = Date.now() + 60000;
while (Date.now() < deadline) {
  const primary = rs.status().members.find((member) => member.stateStr === "PRIMARY");
  if (primary) {
    print(`mongo-init: primary is ${primary.name}`);
    quit(0);
  }
  sleep(500);
}
print("mongo-init: no primary after 60 s");
quit(1);

"""The harness's real services behave as the operator's tests rely on."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request

from devtools.services import EtcdServer, MotoServer, NatsServer
from dynamo_ecs import aws


def _register_and_run_task(cluster: str) -> str:
    ecs = aws.client("ecs")
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto needs DNS hostnames on the VPC to give a task ENI a private DNS name.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="infra", Description="infra", VpcId=vpc)["GroupId"]
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family="Dynamo-tasks",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="1024",
        memory="3072",
        containerDefinitions=[{"name": "etcd", "image": "bitnamilegacy/etcd", "memory": 1024}],
    )
    task = ecs.run_task(
        cluster=cluster,
        taskDefinition="Dynamo-tasks",
        launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}},
    )["tasks"][0]
    return str(task["taskArn"])


def test_moto_tasks_stay_running_and_carry_a_private_ip(aws_env: MotoServer) -> None:
    task_arn = _register_and_run_task("dynamo-fargate")
    for _ in range(3):
        task = aws.client("ecs").describe_tasks(cluster="dynamo-fargate", tasks=[task_arn])["tasks"][0]
        assert task["lastStatus"] == "RUNNING"
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert details["privateIPv4Address"].count(".") == 3


def test_moto_reset_isolates_tests(aws_env: MotoServer) -> None:
    assert aws.client("ecs").list_clusters()["clusterArns"] == []


def test_nats_server_has_jetstream_and_monitor(nats: NatsServer) -> None:
    import nats as nats_client

    async def publish() -> None:
        connection = await nats_client.connect(nats.url)
        jetstream = connection.jetstream()
        await jetstream.add_stream(name="harness", subjects=["harness.*"])
        await jetstream.publish("harness.a", b"x")
        await connection.close()

    asyncio.run(publish())
    with urllib.request.urlopen(f"{nats.monitor_url}/jsz?streams=true", timeout=5) as response:
        jsz = json.load(response)
    streams = {s["name"]: s for s in jsz["account_details"][0]["stream_detail"]}
    assert streams["harness"]["state"]["messages"] == 1


def test_etcd_answers_health_and_key_value(etcd: EtcdServer) -> None:
    with urllib.request.urlopen(f"{etcd.url}/health", timeout=5) as response:
        assert json.load(response)["health"] == "true"
    key = base64.b64encode(b"v1/harness/key").decode()
    put = urllib.request.Request(
        f"{etcd.url}/v3/kv/put",
        data=json.dumps({"key": key, "value": base64.b64encode(b"1").decode()}).encode(),
    )
    urllib.request.urlopen(put, timeout=5).close()
    get = urllib.request.Request(f"{etcd.url}/v3/kv/range", data=json.dumps({"key": key}).encode())
    with urllib.request.urlopen(get, timeout=5) as response:
        kvs = json.load(response)["kvs"]
    assert base64.b64decode(kvs[0]["value"]) == b"1"
